import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { ApiError, del, enc, events, get, List, patch, post, Stream, Thing } from "./api";
import { ago, clear, errorBox, field, fmtTime, h, plural, pretty, tableWrap } from "./ui";
import { stateBadge } from "./things";
import type { Me } from "./api";
import { canOperate, navigate } from "./main";
import { thingAlarms } from "./alarms";
import { caption, commandForms, DeviceModel, labelledFields, loadModel, withUnit } from "./model";
import { credentialsCard } from "./credentials";

const ranges: { label: string; ms: number; interval?: string }[] = [
  { label: "15 minutes", ms: 15 * 60e3 },
  { label: "1 hour", ms: 3600e3 },
  { label: "6 hours", ms: 6 * 3600e3, interval: "2m" },
  { label: "24 hours", ms: 24 * 3600e3, interval: "10m" },
  { label: "7 days", ms: 7 * 86400e3, interval: "1h" },
];

interface Point {
  key: string;
  ts: number;
  value: unknown;
}

// numbers flattens a telemetry payload the way the server stores it
// (nested keys joined by ".") and keeps the numbers.
function numbers(v: unknown, prefix = "", out: Record<string, number> = {}): Record<string, number> {
  if (typeof v === "number") out[prefix || "value"] = v;
  else if (typeof v === "boolean") out[prefix || "value"] = v ? 1 : 0;
  else if (v && typeof v === "object" && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) if (k !== "ts") numbers(x, prefix ? `${prefix}.${k}` : k, out);
  }
  return out;
}

export function thingPage(main: HTMLElement, params: Record<string, string>): () => void {
  const name = params.name;
  const path = `/things/${enc(name)}`;
  const err = errorBox();
  const head = h("div", { class: "title" }, h("h1", {}, name));
  // The thing's audit trail: offered to admins only (they alone may read the log).
  get<Me>("/auth/me").then((m) => m.role === "admin" && head.append(h("a", { href: `/audit?target=${enc("thing:" + name)}`, "data-testid": "audit-trail" }, "Audit trail")), () => {});
  // ... and its latest entries on the page itself (GET /audit?target=thing:NAME).
  const auditBox = h("section", { class: "card", "aria-labelledby": "audit-h", "data-testid": "thing-audit", hidden: true });
  get<Me>("/auth/me").then((m) => { if (m.role === "admin") loadAudit(); }, () => {});
  async function loadAudit(): Promise<void> {
    try {
      const page = await get<List<{ time: string; actor: { kind: string; name: string }; action: string; status: number; source: string }>>(`/audit?target=${enc("thing:" + name)}&limit=10`);
      auditBox.hidden = false;
      clear(
        auditBox,
        h("h2", { id: "audit-h" }, "Audit trail"),
        page.items.length === 0
          ? h("p", { class: "muted" }, "No changes recorded.")
          : tableWrap(
              h(
                "table",
                {},
                h("thead", {}, h("tr", {}, ...["Time", "Actor", "Action", "Status"].map((c) => h("th", { scope: "col" }, c)))),
                h("tbody", {}, ...page.items.map((e) => h("tr", {}, h("td", {}, fmtTime(e.time)), h("td", {}, `${e.actor.kind}: ${e.actor.name}`), h("td", {}, h("code", {}, e.action)), h("td", { class: e.status >= 400 ? "num bad" : "num" }, String(e.status))))),
              ),
            ),
        page.nextCursor ? h("p", {}, h("a", { href: `/audit?target=${enc("thing:" + name)}` }, "Older entries")) : null,
      );
    } catch {
      auditBox.hidden = true;
    }
  }
  const info = h("section", { class: "card", "aria-label": "Thing" }, "…");
  const charts = h("div", { class: "charts", "data-testid": "charts" });
  const rangeSel = h("select", { name: "range" }, ...ranges.map((r, i) => h("option", { value: String(i) }, r.label)));
  const shadowBox = h("section", { class: "card", "aria-labelledby": "shadow-h" });
  const commandsBox = h("section", { class: "card", "aria-labelledby": "commands-h" });
  const methodsBox = h("section", { class: "card", "aria-labelledby": "methods-h" });
  const filesBox = h("section", { class: "card", "aria-labelledby": "files-h" });
  const messages = h("ul", { class: "events messages", "aria-live": "off", "data-testid": "messages" });
  // The rest of the page appears once the thing is known: an unknown
  // thing gets the error alone.
  clear(main, head, err.el, h("p", { class: "loading" }, "Loading…"));
  // The thing's active alarms, once the thing is known.
  let alarmCard: ReturnType<typeof thingAlarms> | null = null;
  let credsCard: HTMLElement | null = null; // its credentials (credentials.ts)
  function showPage(): void {
    alarmCard = alarmCard ?? thingAlarms(name);
    clear(
      main,
      head,
      err.el,
      info,
      alarmCard.el,
      h("section", { class: "card", "aria-labelledby": "tel-h" }, h("div", { class: "title" }, h("h2", { id: "tel-h" }, "Telemetry"), field("Range", rangeSel)), charts),
      h("div", { class: "cols" }, shadowBox, h("div", {}, commandsBox, methodsBox)),
      filesBox,
      (credsCard = credsCard ?? credentialsCard(name)),
      h("section", { class: "card" }, h("h2", {}, "Recent messages"), messages),
      auditBox,
    );
  }

  // --- the thing itself ---
  let thing: Thing | null = null;
  let model: DeviceModel | null = null; // of the thing's type (docs/device-models.md)
  let started = false;
  let presenceTimer: number | undefined;
  // The newest presence event of this thing. The registry records
  // connection state in batches after the event, so a record read in
  // between is older than the event: its last-seen time is before it.
  let lastPresence: { connected: boolean; at: number } | null = null;
  const withPresence = (t: Thing): Thing => {
    if (lastPresence && !isNaN(lastPresence.at) && (!t.lastSeen || Date.parse(t.lastSeen) < lastPresence.at - 1)) {
      t.connected = lastPresence.connected;
    }
    return t;
  };
  async function loadThing(): Promise<void> {
    try {
      thing = withPresence(await get<Thing>(path));
      err.hide();
      if (!started) {
        model = await loadModel(thing.type);
        started = true;
        showPage();
        start();
      }
      renderInfo(thing);
    } catch (e) {
      if (!started && e instanceof ApiError && e.status === 404) {
        clear(main, head, err.el, h("p", {}, h("a", { href: "/things" }, "Back to the things")));
      } else if (!started) {
        clear(main, head, err.el);
      }
      err.show(e);
    }
  }
  function renderInfo(t: Thing): void {
    const attrs = h("textarea", { name: "attributes", rows: 3 }, Object.entries(t.attributes ?? {}).map(([k, v]) => `${k}=${v}`).join("\n"));
    const groups = h("input", { name: "groups", value: t.groups.join(", ") });
    const ferr = errorBox();
    const save = h("button", { type: "submit" }, "Save");
    const form = h("form", { class: "inline-form" }, ferr.el, field("Attributes (key=value per line)", attrs), field("Groups", groups), save);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      ferr.hide();
      const a: Record<string, string> = {};
      for (const line of attrs.value.split("\n").map((s) => s.trim()).filter(Boolean)) {
        const [k, ...v] = line.split("=");
        a[k.trim()] = v.join("=").trim();
      }
      try {
        renderInfo(await patch<Thing>(path, { attributes: a, groups: groups.value.split(",").map((s) => s.trim()).filter(Boolean) }));
      } catch (e) {
        ferr.show(e);
      }
    });
    const toggle = h("button", { type: "button" }, t.enabled ? "Disable" : "Enable");
    toggle.addEventListener("click", async () => {
      try {
        renderInfo(await patch<Thing>(path, { enabled: !t.enabled }));
      } catch (e) {
        err.show(e);
      }
    });
    const remove = h("button", { type: "button", class: "danger" }, "Delete thing");
    remove.addEventListener("click", async () => {
      if (!confirm(`Delete thing ${t.name} and its credentials? Its connections close at once.`)) return;
      try {
        await del(path);
        navigate("/things");
      } catch (e) {
        err.show(e);
      }
    });
    const st = t.stats ?? { publishDenied: 0, invalidTelemetry: 0 };
    clear(
      info,
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "State"),
        h("dd", { "data-testid": "state" }, stateBadge(t)),
        h("dt", {}, "Last seen"),
        h("dd", {}, ago(t.lastSeen), t.lastSeen ? ` (${fmtTime(t.lastSeen)})` : ""),
        h("dt", {}, "Type"),
        h("dd", {}, t.type || "–"),
        h("dt", {}, "Tags"),
        h("dd", {}, t.tags.join(", ") || "–"),
        h("dt", {}, "Enabled"),
        h("dd", {}, t.enabled ? "yes " : "no ", canOperate() ? toggle : null),
        h("dt", {}, "Denied publishes"),
        h(
          "dd",
          { "data-testid": "publish-denied", class: st.publishDenied ? "bad" : "" },
          String(st.publishDenied),
          st.lastDeniedTopic ? h("small", {}, ` latest on `, h("code", {}, st.lastDeniedTopic), ` ${ago(st.lastDeniedAt)}`) : "",
          st.publishDenied ? h("small", { class: "muted" }, h("br"), "Its policies do not allow these topics; MQTT 3.1.1 devices are not told.") : "",
        ),
        h("dt", {}, "Invalid telemetry"),
        h(
          "dd",
          { "data-testid": "invalid-telemetry", class: st.invalidTelemetry ? "bad" : "" },
          String(st.invalidTelemetry),
          st.invalidTelemetry ? h("small", { class: "muted" }, ` (${plural(st.invalidTelemetry, "message")} on things/${t.name}/telemetry that ${st.invalidTelemetry === 1 ? "is" : "are"} not a JSON object, latest ${ago(st.lastInvalidAt)}: delivered, not stored)`) : "",
        ),
        ...(model
          ? [
              h("dt", {}, "Outside the model"),
              h(
                "dd",
                { "data-testid": "model-violations", class: st.modelViolations ? "bad" : "" },
                String(st.modelViolations ?? 0),
                st.lastModelViolation
                  ? h("small", { class: "muted" }, ` latest: ${st.lastModelViolation.kind} `, h("code", {}, st.lastModelViolation.key), ` = ${JSON.stringify(st.lastModelViolation.value)} (${st.lastModelViolation.reason}) ${ago(st.lastModelViolationAt)}`)
                  : "",
              ),
            ]
          : []),
      ),
      // A viewer reads what the form would change, and is offered no change.
      canOperate()
        ? [form, h("p", { class: "danger-zone" }, remove)]
        : h(
            "dl",
            { class: "facts" },
            h("dt", {}, "Attributes"),
            h("dd", {}, Object.entries(t.attributes ?? {}).map(([k, v]) => `${k}=${v}`).join(", ") || "–"),
            h("dt", {}, "Groups"),
            h("dd", {}, t.groups.join(", ") || "–"),
          ),
    );
  }

  // --- telemetry charts ---
  const plots = new Map<string, { u: uPlot; xs: number[]; ys: number[]; el: HTMLElement; last: HTMLElement }>();
  const chartWidth = () => Math.max(240, charts.clientWidth - 12);
  function plotFor(key: string) {
    let p = plots.get(key);
    if (p) return p;
    const last = h("span", { class: "last", "data-testid": `last-${key}` });
    const el = h("figure", { class: "chart", "data-key": key }, h("figcaption", {}, caption(model, key), " ", last));
    charts.append(el);
    const xs: number[] = [];
    const ys: number[] = [];
    const u = new uPlot(
      {
        width: chartWidth(),
        height: 180,
        // The x axis is the range chosen, up to now (one point must not
        // stretch it over years).
        scales: { x: { time: true, range: () => [(Date.now() - ranges[Number(rangeSel.value)].ms) / 1000, Date.now() / 1000] } },
        series: [{}, { label: key, stroke: "#2a6cd6", width: 2, points: { show: true, size: 4 }, value: (_u, v) => (v == null ? "–" : String(v)) }],
        // The y axis is as wide as its longest label (38.72 must not be cut).
        axes: [{}, { size: yAxisSize }],
        // Hovering shows the time and value under the cursor.
        legend: { show: true, live: true },
        cursor: { y: false },
      },
      [xs, ys],
      el,
    );
    (el as any).uplot = u; // for the browser tests
    p = { u, xs, ys, el, last };
    plots.set(key, p);
    return p;
  }
  function redraw(): void {
    for (const [key, p] of plots) {
      p.u.setData([p.xs, p.ys]);
      p.last.textContent = p.ys.length ? withUnit(model, key, p.ys[p.ys.length - 1]) : "";
    }
  }
  const onResize = () => {
    for (const p of plots.values()) p.u.setSize({ width: chartWidth(), height: 180 });
  };
  window.addEventListener("resize", onResize);
  let aggTimer: number | undefined;
  async function loadTelemetry(): Promise<void> {
    window.clearTimeout(aggTimer);
    aggTimer = undefined;
    const r = ranges[Number(rangeSel.value)];
    const from = Date.now() - r.ms;
    const q = r.interval ? `from=${from}&agg=avg&interval=${r.interval}` : `from=${from}&limit=10000`;
    try {
      const list = await get<List<Point>>(`${path}/telemetry?${q}`);
      for (const p of plots.values()) p.u.destroy();
      plots.clear();
      clear(charts);
      for (const pt of list.items) {
        if (typeof pt.value !== "number") continue;
        const p = plotFor(pt.key);
        p.xs.push(pt.ts / 1000);
        p.ys.push(pt.value);
      }
      if (plots.size === 0) charts.append(h("p", { class: "muted empty" }, `No numeric telemetry in the last ${r.label}. Devices publish JSON on things/${name}/telemetry.`));
      redraw();
    } catch (e) {
      err.show(e);
    }
  }
  rangeSel.addEventListener("change", loadTelemetry);
  function liveTelemetry(payload: unknown, time: string): void {
    const vals = numbers(payload);
    const keys = Object.keys(vals);
    if (keys.length === 0) return;
    if (ranges[Number(rangeSel.value)].interval) {
      // Aggregated ranges are not joined to raw points: show the newest
      // value and reload the aggregates now and then.
      for (const k of keys) {
        const p = plots.get(k);
        if (p) p.last.textContent = withUnit(model, k, vals[k]);
      }
      if (aggTimer === undefined) aggTimer = window.setTimeout(loadTelemetry, 30_000);
      return;
    }
    charts.querySelector(".empty")?.remove();
    const ts = new Date(time).getTime() / 1000;
    for (const k of keys) {
      const p = plotFor(k);
      p.xs.push(ts);
      p.ys.push(vals[k]);
    }
    redraw();
  }

  // --- shadow ---
  let es: Stream | undefined;
  let pres: Stream | undefined;
  async function loadShadow(): Promise<void> {
    let doc: any = null;
    try {
      // Ask for the classic shadow only when it exists: no 404 to log.
      const list = await get<List<{ name: string }>>(`${path}/shadows`);
      if (list.items.some((x) => x.name === "" || x.name === "classic")) doc = await get(`${path}/shadows/classic`);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) {
        err.show(e);
        return;
      }
    }
    const state = doc?.state ?? {};
    const desired = h("textarea", { name: "desired", rows: 5, spellcheck: "false", "aria-describedby": "desired-hint" }, pretty(state.desired ?? {}));
    const ferr = errorBox();
    const save = h("button", { type: "submit" }, "Set desired");
    const form = h("form", {}, ferr.el, field("Desired (JSON; null deletes a key)", desired), h("small", { id: "desired-hint" }, "Merged into the desired state; the device gets the delta."), save);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      ferr.hide();
      let v: unknown;
      try {
        v = JSON.parse(desired.value);
      } catch (e) {
        ferr.show(`Desired is not valid JSON: ${(e as Error).message}`);
        return;
      }
      try {
        await post(`${path}/shadows/classic`, { state: { desired: v } });
        loadShadow();
      } catch (e) {
        ferr.show(e);
      }
    });
    clear(
      shadowBox,
      h("h2", { id: "shadow-h" }, "Shadow", doc ? h("small", {}, ` version ${doc.version}`) : ""),
      doc ? "" : h("p", { class: "muted" }, "No shadow yet: the device reports one, or set a desired value."),
      h("div", { class: "shadow" },
        h("div", {}, h("h3", {}, "Reported"), labelledFields(model?.properties?.reported, state.reported ?? {}, "reported-fields") ?? "", h("pre", { "data-testid": "reported" }, pretty(state.reported ?? {}))),
        h("div", {}, h("h3", {}, "Delta"), h("pre", { "data-testid": "delta" }, pretty(state.delta ?? {}))),
      ),
      canOperate() ? form : null,
    );
  }

  // --- files uploaded by the device (docs/files.md) ---
  const fileList = h("tbody", { "data-testid": "files" });
  clear(filesBox, h("h2", { id: "files-h" }, "Files"), tableWrap(h("table", {}, h("thead", {}, h("tr", {}, ...["File", "Size", "SHA-256", "Updated", ""].map((c) => h("th", { scope: "col" }, c)))), fileList)));
  async function loadFiles(): Promise<void> {
    try {
      const list = await get<List<any>>(`${path}/files`);
      clear(
        fileList,
        ...list.items.map((f) => {
          const size = f.complete ? `${f.size} bytes` : "";
          const up = f.upload ? ` (uploading: ${f.upload.received}${f.upload.total != null ? ` of ${f.upload.total}` : ""} bytes)` : "";
          const link = f.complete
            ? h("a", { href: `/api/v1${path}/files/${enc(f.name)}/content`, download: f.name }, "Download")
            : "";
          const remove = h("button", { type: "button", class: "link" }, "Delete");
          remove.addEventListener("click", async () => {
            if (!window.confirm(`Delete ${f.name}?`)) return;
            try {
              await del(`${path}/files/${enc(f.name)}`);
            } catch (e) {
              err.show(e);
            }
            loadFiles();
          });
          return h("tr", {}, h("td", {}, h("code", {}, f.name)), h("td", {}, size + up), h("td", {}, h("code", { title: f.sha256 ?? "" }, (f.sha256 ?? "").slice(0, 12))), h("td", {}, fmtTime(f.updatedAt)), h("td", {}, link, canOperate() ? [" ", remove] : null));
        }),
      );
      if (list.items.length === 0) clear(fileList, h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No files uploaded by this device.")));
    } catch (e) {
      clear(fileList, h("tr", {}, h("td", { colspan: 5, class: "muted" }, e instanceof Error ? e.message : String(e))));
    }
  }

  // --- commands ---
  const cmdList = h("tbody", { "data-testid": "commands" });
  let cmdTimer: number | undefined;
  async function loadCommands(): Promise<void> {
    try {
      const list = await get<List<any>>(`${path}/commands`);
      clear(
        cmdList,
        ...list.items.map((c) =>
          h("tr", {}, h("td", {}, c.name), h("td", {}, h("span", { class: `status ${c.status}`, "data-status": c.status }, c.status)), h("td", {}, fmtTime(c.createdAt)), h("td", {}, c.result ? pretty(c.result.output ?? c.result.status) : "")),
        ),
      );
      if (list.items.length === 0) clear(cmdList, h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No commands yet.")));
      // While a command is on its way, follow its status.
      if (list.items.some((c) => c.status === "queued" || c.status === "delivered")) {
        window.clearTimeout(cmdTimer);
        cmdTimer = window.setTimeout(loadCommands, 2000);
      }
    } catch (e) {
      clear(cmdList, h("tr", {}, h("td", { colspan: 4, class: "muted" }, e instanceof Error ? e.message : String(e))));
    }
  }
  function start(): void {
    {
      const cname = h("input", { name: "command", list: "command-names", required: true, value: "reboot" });
      const payload = h("textarea", { name: "payload", rows: 2, spellcheck: "false" }, "{}");
      const ttl = h("input", { name: "ttl", type: "number", min: 1, value: 3600 });
      const ferr = errorBox();
      const send = h("button", { type: "submit" }, "Send command");
      const form = h(
        "form",
        {},
        ferr.el,
        h("datalist", { id: "command-names" }, ...["reboot", "lock", "wipe", "locate", "configure"].map((n) => h("option", { value: n }))),
        h("div", { class: "grid" }, field("Command", cname), field("Time to live (s)", ttl)),
        field("Payload (JSON)", payload),
        send,
      );
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        ferr.hide();
        let p: unknown;
        try {
          p = JSON.parse(payload.value || "null");
        } catch (e) {
          ferr.show(`Payload is not valid JSON: ${(e as Error).message}`);
          return;
        }
        try {
          await post(`${path}/commands`, { name: cname.value.trim(), payload: p, ttlSeconds: Number(ttl.value) || undefined });
          loadCommands();
        } catch (e) {
          ferr.show(e);
        }
      });
      clear(commandsBox, h("h2", { id: "commands-h" }, "Commands"), canOperate() ? [(model && commandForms(model, path, loadCommands)) || "", form] : null, tableWrap(h("table", {}, h("thead", {}, h("tr", {}, ...["Command", "Status", "Sent", "Result"].map((c) => h("th", { scope: "col" }, c)))), cmdList)));
    }

    // --- direct methods ---
    {
      const mname = h("input", { name: "method", required: true, placeholder: "getConfig" });
      const payload = h("textarea", { name: "payload", rows: 2, spellcheck: "false" }, "{}");
      const timeout = h("input", { name: "timeout", type: "number", min: 1, max: 300, value: 10 });
      const ferr = errorBox();
      const out = h("pre", { "data-testid": "method-response", "aria-live": "polite" });
      const invoke = h("button", { type: "submit" }, "Invoke");
      const form = h("form", {}, ferr.el, h("div", { class: "grid" }, field("Method", mname), field("Timeout (s)", timeout)), field("Payload (JSON)", payload), invoke);
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        ferr.hide();
        out.textContent = "";
        let p: unknown;
        try {
          p = JSON.parse(payload.value || "null");
        } catch (e) {
          ferr.show(`Payload is not valid JSON: ${(e as Error).message}`);
          return;
        }
        invoke.disabled = true;
        out.textContent = "Waiting for the device…";
        try {
          const res = await post(`${path}/methods/${enc(mname.value.trim())}`, { payload: p, timeoutSeconds: Number(timeout.value) || undefined });
          out.textContent = `status ${res.status}\n${pretty(res.payload)}`;
        } catch (e) {
          out.textContent = "";
          ferr.show(e);
        } finally {
          invoke.disabled = false;
        }
      });
      clear(methodsBox, h("h2", { id: "methods-h" }, "Direct methods"), canOperate() ? [form, out] : h("p", { class: "muted" }, "Operators invoke methods on the device."));
    }

    // --- live ---
    es = events(`thing=${enc(name)}`, {
      message: (m) => {
        const body = m.payload !== undefined ? JSON.stringify(m.payload) : m.text ?? "";
        messages.prepend(h("li", {}, h("time", {}, new Date(m.time).toLocaleTimeString()), " ", h("code", {}, m.topic), " ", h("span", { class: "payload" }, body.length > 300 ? body.slice(0, 300) + "…" : body)));
        while (messages.children.length > 50) messages.lastElementChild!.remove();
        if (m.topic === `things/${name}/telemetry` && m.payload !== undefined) liveTelemetry(m.payload, m.time);
        if (m.topic.includes("/shadow/")) {
          if (shadowTimer === undefined) shadowTimer = window.setTimeout(() => { shadowTimer = undefined; loadShadow(); }, 300);
        }
        if (m.topic.includes("/commands/")) window.setTimeout(loadCommands, 200);
        if (m.topic.startsWith("$mote/events/files/")) loadFiles();
      },
    });
    // Presence of this thing changes its state line. Back after a lost
    // connection (a server restart), everything is read again: the events
    // in between were missed.
    pres = events(
      "presence=1&alarms=1",
      {
        alarm: (e) => alarmCard?.onAlarm(e),
        presence: (e) => {
          const p = e.payload;
          if ((p?.thing ?? "") !== name || !thing) return;
          // The event says the state at once; the registry's copy is
          // written in batches after it (see withPresence).
          const at = Date.parse(p.time ?? "");
          if ((p.event === "connected" || p.event === "disconnected") && !(lastPresence && lastPresence.at > at)) {
            lastPresence = { connected: p.event === "connected", at };
            renderInfo(withPresence(thing));
          }
          if (presenceTimer === undefined) presenceTimer = window.setTimeout(() => { presenceTimer = undefined; loadThing(); }, 1000);
        },
      },
      () => {
        loadThing();
        alarmCard?.refresh();
        loadTelemetry();
        loadShadow();
        loadCommands();
        loadFiles();
      },
    );

    loadTelemetry();
    loadShadow();
    loadCommands();
    loadFiles();
  }
  let shadowTimer: number | undefined;
  loadThing();
  return () => {
    es?.close();
    pres?.close();
    alarmCard?.close();
    window.removeEventListener("resize", onResize);
    window.clearTimeout(aggTimer);
    for (const p of plots.values()) p.u.destroy();
    if (shadowTimer !== undefined) clearTimeout(shadowTimer);
    window.clearTimeout(cmdTimer);
    window.clearTimeout(presenceTimer);
    cmdTimer = -1;
  };
}

// yAxisSize fits the y axis to its widest label.
function yAxisSize(u: uPlot, values: string[] | null, axisIdx: number, cycleNum: number): number {
  const axis = u.axes[axisIdx];
  if (cycleNum > 1) return (axis as any)._size as number; // keep it stable while uPlot converges
  let w = 0;
  if (values && values.length) {
    const ctx = u.ctx;
    ctx.save();
    ctx.font = (axis.font as unknown as string) || "12px system-ui, sans-serif";
    for (const v of values) w = Math.max(w, ctx.measureText(v).width);
    ctx.restore();
  }
  const ticks = (axis.ticks?.size ?? 10) + (axis.gap ?? 5);
  return Math.ceil(w / devicePixelRatio + ticks + 8);
}
