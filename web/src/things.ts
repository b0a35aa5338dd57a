import { ApiError, del, enc, events, get, List, patch, post, Thing } from "./api";
import { badge, clear, downloadLink, errorBox, field, h, ago, plural, tableWrap } from "./ui";
import { canOperate } from "./main";

const sorts: [string, string][] = [
  ["name", "name"],
  ["-lastSeen", "last seen, newest first"],
  ["lastSeen", "last seen, oldest first"],
  ["-createdAt", "created, newest first"],
  ["-name", "name, Z to A"],
];

// stateBadge: a disabled thing is shown as disabled, whatever presence
// says (it is being disconnected).
export function stateBadge(t: Thing): HTMLElement {
  if (!t.enabled) return h("span", { class: "badge warn" }, "disabled");
  return badge(t.connected, "connected", "offline");
}

// The things list: search, filter, sort, paginate, create (with
// credentials), enable/disable, delete; it follows presence.
export function thingsPage(main: HTMLElement): () => void {
  const err = errorBox();
  const params = new URLSearchParams(location.search);
  const q = {
    prefix: h("input", { type: "search", name: "prefix", placeholder: "name starts with", value: params.get("prefix") ?? "" }),
    type: h("input", { name: "type", placeholder: "type", value: params.get("type") ?? "" }),
    group: h("input", { name: "group", placeholder: "group", value: params.get("group") ?? "" }),
    attr: h("input", { name: "attr", placeholder: "key=value", value: params.get("attr") ?? "" }),
    connected: h(
      "select",
      { name: "connected" },
      h("option", { value: "" }, "any"),
      h("option", { value: "true" }, "connected"),
      h("option", { value: "false" }, "disconnected"),
    ),
  };
  q.connected.value = params.get("connected") ?? "";
  // The fleet query box (docs/fleet-query.md): when it holds a query, the
  // list is the things that match it and the other filters are not used.
  // Enter searches, Shift+Enter starts a new line; an error is shown with
  // its line:column and the caret is put there.
  const fq = h("textarea", {
    name: "q",
    rows: 2,
    class: "fleet-query",
    spellcheck: "false",
    "aria-label": "Fleet query",
    "data-testid": "fleet-query",
    placeholder: "fleet query, e.g. attributes.site = 'ams' AND version(shadow.reported.firmware) < '1.5'",
  });
  fq.value = params.get("q") ?? "";
  // Enter without Shift searches and must not also put a line break into
  // the box: the keydown is cancelled, and so are the keypress and the
  // line break a browser may still send after it (an automated or remote
  // keyboard delivers them as separate events, possibly after the search
  // has already moved the caret to an error).
  let enterSearches = false;
  fq.addEventListener("keydown", (ev: KeyboardEvent) => {
    enterSearches = ev.key === "Enter" && !ev.shiftKey;
    if (enterSearches) {
      ev.preventDefault();
      first();
    }
  });
  fq.addEventListener("keypress", (ev: KeyboardEvent) => {
    if (ev.key === "Enter" && !ev.shiftKey) ev.preventDefault();
  });
  fq.addEventListener("beforeinput", (ev: InputEvent) => {
    const lineBreak = ev.inputType === "insertLineBreak" || ev.inputType === "insertParagraph";
    if (enterSearches && lineBreak) ev.preventDefault();
  });
  fq.addEventListener("keyup", () => {
    enterSearches = false;
  });
  const fqErr = h("div", { class: "error query-error", role: "alert", "data-testid": "query-error", hidden: true });
  const showQueryError = (e: ApiError) => {
    fqErr.textContent = e.message;
    fqErr.hidden = false;
    // "at LINE:COL: ..." → put the caret on the place.
    const m = /^at (\d+):(\d+):/.exec(e.message);
    if (m) {
      const lines = fq.value.split("\n");
      const line = Math.min(Number(m[1]), lines.length);
      let off = 0;
      for (let i = 0; i < line - 1; i++) off += lines[i].length + 1;
      off += Math.min(Number(m[2]) - 1, lines[line - 1].length);
      fq.focus();
      fq.setSelectionRange(off, Math.min(off + 1, fq.value.length));
    }
  };
  const sortSel = h("select", { name: "sort" }, ...sorts.map(([v, label]) => h("option", { value: v }, label)));
  sortSel.value = params.get("sort") ?? "name";
  sortSel.addEventListener("change", () => first());
  const count = h("span", { class: "muted", "data-testid": "things-count", "aria-live": "polite" });
  const tbody = h("tbody");
  const pager = h("div", { class: "pager" });
  const cursors: string[] = [""]; // cursor of each page seen
  let page = 0;
  const pageSize = 25;
  // first shows the first page (a new search, sort or thing).
  // The selected things (kept across pages and reloads) for the bulk
  // actions; shown is the page's rows.
  const selected = new Map<string, Thing>();
  let shown: Thing[] = [];
  const selectAll = h("input", { type: "checkbox", "aria-label": "Select all things on this page", "data-testid": "select-all" });
  const bulk = bulkBar(selected, () => load());
  const syncSelection = () => {
    const n = shown.filter((t) => selected.has(t.name)).length;
    selectAll.checked = n > 0 && n === shown.length;
    selectAll.indeterminate = n > 0 && n < shown.length;
    bulk.update();
  };
  selectAll.addEventListener("change", () => {
    for (const t of shown) {
      if (selectAll.checked) selected.set(t.name, t);
      else selected.delete(t.name);
    }
    for (const cb of tbody.querySelectorAll<HTMLInputElement>("input[data-select]")) cb.checked = selectAll.checked;
    syncSelection();
  });
  const first = () => {
    cursors.length = 1;
    page = 0;
    load();
  };

  const query = (): string => {
    const p = new URLSearchParams();
    const fleet = fq.value.trim();
    if (fleet) {
      p.set("q", fleet);
      if (sortSel.value && sortSel.value !== "name") p.set("sort", sortSel.value);
      return p.toString();
    }
    if (q.prefix.value) p.set("prefix", q.prefix.value.trim());
    if (q.type.value) p.set("type", q.type.value.trim());
    if (q.group.value) p.set("group", q.group.value.trim());
    if (q.connected.value) p.set("connected", q.connected.value);
    if (sortSel.value && sortSel.value !== "name") p.set("sort", sortSel.value);
    const attr = q.attr.value.trim();
    if (attr) {
      const [k, ...v] = attr.split("=");
      p.set("attr." + k.trim(), v.join("=").trim());
    }
    return p.toString();
  };

  async function load(): Promise<void> {
    err.hide();
    fqErr.hidden = true;
    const qs = query();
    history.replaceState(null, "", "/things" + (qs ? "?" + qs : ""));
    try {
      const list = await get<List<Thing>>(`/things?limit=${pageSize}&${qs}${cursors[page] ? "&cursor=" + enc(cursors[page]) : ""}`);
      if (list.total !== undefined) count.textContent = plural(list.total, "thing");
      if (list.nextCursor) cursors[page + 1] = list.nextCursor;
      else cursors.length = page + 1;
      shown = list.items;
      for (const t of list.items) if (selected.has(t.name)) selected.set(t.name, t);
      clear(tbody, ...list.items.map(row));
      if (list.items.length === 0) clear(tbody, h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No things match.")));
      syncSelection();
      clear(
        pager,
        h("button", { type: "button", disabled: page === 0, onclick: () => { page--; load(); } }, "← Previous"),
        h("span", { "data-testid": "page" }, ` Page ${page + 1}${list.total ? ` of ${Math.max(1, Math.ceil(list.total / pageSize))}` : ""} `),
        h("button", { type: "button", disabled: !list.nextCursor, onclick: () => { page++; load(); } }, "Next →"),
      );
    } catch (e) {
      if (e instanceof ApiError && e.field === "q") {
        showQueryError(e);
        clear(tbody);
        count.textContent = "";
      } else {
        err.show(e);
      }
    }
  }

  function row(t: Thing): HTMLElement {
    const toggle = h("button", { type: "button", class: "small" }, t.enabled ? "Disable" : "Enable");
    toggle.addEventListener("click", async () => {
      try {
        const nt = await patch<Thing>(`/things/${enc(t.name)}`, { enabled: !t.enabled });
        tr.replaceWith(row(nt));
        load();
      } catch (e) {
        err.show(e);
      }
    });
    const remove = h("button", { type: "button", class: "small danger" }, "Delete");
    remove.addEventListener("click", async () => {
      if (!confirm(`Delete thing ${t.name} and its credentials? Its connections close at once.`)) return;
      try {
        await del(`/things/${enc(t.name)}`);
        load();
      } catch (e) {
        err.show(e);
      }
    });
    const pick = h("input", { type: "checkbox", "data-select": t.name, "aria-label": `Select ${t.name}`, checked: selected.has(t.name) });
    pick.addEventListener("change", () => {
      if (pick.checked) selected.set(t.name, t);
      else selected.delete(t.name);
      syncSelection();
    });
    const tr = h(
      "tr",
      { "data-thing": t.name },
      h("td", { class: "select" }, canOperate() ? pick : null), // a viewer may not change what it would select
      h("td", {}, h("a", { href: `/things/${enc(t.name)}` }, t.name)),
      h("td", { class: "type" }, t.type ?? ""),
      h("td", { "data-testid": "state" }, stateBadge(t)),
      h("td", {}, ago(t.lastSeen)),
      h("td", { class: "attrs" }, Object.entries(t.attributes ?? {}).map(([k, v]) => `${k}=${v}`).join(", "), t.groups.length ? ` [${t.groups.join(", ")}]` : ""),
      h("td", { class: "actions" }, canOperate() ? [toggle, " ", remove] : null),
    );
    return tr;
  }

  const search = h(
    "form",
    { class: "filters", role: "search", onsubmit: (ev: Event) => { ev.preventDefault(); first(); } },
    h("div", { class: "fleet-query-row" }, field("Query", fq), fqErr),
    field("Name", q.prefix),
    field("Type", q.type),
    field("Group", q.group),
    field("Attribute", q.attr),
    field("State", q.connected),
    field("Sort by", sortSel),
    h("button", { type: "submit" }, "Search"),
  );
  const createBox = h("div");
  clear(
    main,
    h("div", { class: "title" }, h("h1", {}, "Things ", count), canOperate() ? h("button", { type: "button", onclick: () => createForm(createBox, first) }, "New thing") : null),
    createBox,
    err.el,
    search,
    canOperate() ? bulk.el : null,
    tableWrap(
      h(
        "table",
        { class: "things" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "select" }, canOperate() ? selectAll : null), ...["Name", "Type", "State", "Last seen", "Attributes", ""].map((c, i) => h("th", { scope: "col", class: ["", "type", "", "", "attrs", ""][i] || undefined }, c)))),
        tbody,
      ),
    ),
    pager,
  );
  load();
  // Presence changes the rows: reload the page shown, at most once a second.
  let timer: number | undefined;
  const soon = () => {
    if (timer === undefined) timer = window.setTimeout(() => { timer = undefined; load(); }, 1000);
  };
  const es = events("presence=1", { presence: soon }, load);
  return () => {
    es.close();
    window.clearTimeout(timer);
  };
}

// go opens a console page (main.ts renders on popstate).
function go(path: string): void {
  history.pushState(null, "", path);
  window.dispatchEvent(new PopStateEvent("popstate"));
}

// eachThing runs op for every name, four at a time, and collects what
// failed.
async function eachThing(names: string[], op: (name: string) => Promise<unknown>): Promise<{ ok: number; errors: [string, string][] }> {
  const errors: [string, string][] = [];
  let ok = 0;
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const name = names[next++];
      try {
        await op(name);
        ok++;
      } catch (e) {
        errors.push([name, e instanceof Error ? e.message : String(e)]);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, names.length) }, worker));
  errors.sort((a, b) => a[0].localeCompare(b[0]));
  return { ok, errors };
}

// bulkBar: actions on the selected things, each through the REST API
// one thing at a time, with a summary of what succeeded and what failed.
function bulkBar(selected: Map<string, Thing>, reload: () => void): { el: HTMLElement; update: () => void } {
  const count = h("strong", { "data-testid": "selected-count" });
  const action = h(
    "select",
    { name: "bulk-action" },
    h("option", { value: "command" }, "Send a command"),
    h("option", { value: "desired" }, "Set desired state"),
    h("option", { value: "enable" }, "Enable"),
    h("option", { value: "disable" }, "Disable"),
    h("option", { value: "group" }, "Add to group"),
    h("option", { value: "job" }, "Start a job"),
  );
  const cmdName = h("input", { name: "bulk-command", placeholder: "reboot", autocomplete: "off" });
  const cmdPayload = h("textarea", { name: "bulk-payload", rows: 1, spellcheck: "false", placeholder: "{}" });
  const desired = h("textarea", { name: "bulk-desired", rows: 2, spellcheck: "false", placeholder: '{"interval": 60}' });
  const group = h("input", { name: "bulk-group", placeholder: "an existing static group", autocomplete: "off" });
  const inputs: Record<string, HTMLElement[]> = {
    command: [field("Command", cmdName), field("Payload (JSON)", cmdPayload)],
    desired: [field("Desired state (JSON)", desired)],
    group: [field("Group", group)],
  };
  const slot = h("div", { class: "bulk" });
  const apply = h("button", { type: "submit" }, "Apply");
  const clearSel = h("button", { type: "button", class: "link" }, "Clear selection");
  const result = h("div", { class: "bulk-result", "data-testid": "bulk-result", "aria-live": "polite" });
  const el = h(
    "form",
    { class: "card bulk", "aria-label": "Bulk actions", hidden: true },
    h("span", {}, count, " selected"),
    field("Action", action),
    slot,
    apply,
    clearSel,
    result,
  );
  const showInputs = () => clear(slot, ...(inputs[action.value] ?? []));
  action.addEventListener("change", showInputs);
  showInputs();
  const update = () => {
    el.hidden = selected.size === 0;
    count.textContent = plural(selected.size, "thing");
  };
  clearSel.addEventListener("click", () => {
    selected.clear();
    clear(result);
    reload();
  });
  const json = (el: HTMLTextAreaElement, what: string, empty: unknown): unknown => {
    const text = el.value.trim();
    if (!text) return empty;
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error(`${what} is not JSON: ${e instanceof Error ? e.message : e}`);
    }
  };
  el.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const names = [...selected.keys()].sort();
    if (names.length === 0) return;
    clear(result);
    let op: (name: string) => Promise<unknown>;
    let what: string;
    try {
      switch (action.value) {
        case "command": {
          const name = cmdName.value.trim();
          if (!name) throw new Error("Give the command's name.");
          const payload = json(cmdPayload, "The payload", {});
          op = (t) => post(`/things/${enc(t)}/commands`, { name, payload });
          what = `command ${name} sent`;
          break;
        }
        case "desired": {
          const state = json(desired, "The desired state", undefined);
          if (!state || typeof state !== "object" || Array.isArray(state)) throw new Error("The desired state must be a JSON object.");
          op = (t) => post(`/things/${enc(t)}/shadows/classic`, { state: { desired: state } });
          what = "desired state set";
          break;
        }
        case "enable":
        case "disable": {
          const enabled = action.value === "enable";
          op = (t) => patch(`/things/${enc(t)}`, { enabled });
          what = enabled ? "enabled" : "disabled";
          break;
        }
        case "group": {
          const g = group.value.trim();
          if (!g) throw new Error("Give the group's name.");
          // The thing's groups are replaced: read them first.
          op = async (t) => {
            const cur = await get<Thing>(`/things/${enc(t)}`);
            if (cur.groups.includes(g)) return;
            await patch(`/things/${enc(t)}`, { groups: [...cur.groups, g] });
          };
          what = `added to ${g}`;
          break;
        }
        case "job":
          go(`/jobs?new=1&things=${enc(names.join(","))}`);
          return;
        default:
          return;
      }
    } catch (e) {
      clear(result, h("div", { class: "error", role: "alert" }, e instanceof Error ? e.message : String(e)));
      return;
    }
    apply.disabled = true;
    try {
      const r = await eachThing(names, op);
      clear(
        result,
        h("p", { class: r.errors.length ? "" : "ok", "data-testid": "bulk-summary" }, `${r.ok} of ${plural(names.length, "thing")} ${what}${r.errors.length ? `; ${r.errors.length} failed:` : "."}`),
        r.errors.length ? h("ul", { class: "error", role: "alert" }, ...r.errors.map(([n, m]) => h("li", {}, h("strong", {}, n), ": ", m))) : null,
      );
      reload();
    } finally {
      apply.disabled = false;
    }
  });
  return { el, update };
}

function createForm(box: HTMLElement, reload: () => void): void {
  const err = errorBox();
  const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_][A-Za-z0-9_.:\\-]*", title: "letters, digits and _ . : -", autocomplete: "off" });
  const type = h("input", { name: "type" });
  const attrs = h("input", { name: "attributes", placeholder: "site=ams, floor=1" });
  const groups = h("input", { name: "groups", placeholder: "floor-1, lab" });
  const cred = h("select", { name: "credential" }, h("option", { value: "secret" }, "a secret"), h("option", { value: "x509" }, "an X.509 certificate"), h("option", { value: "" }, "none yet"));
  const submit = h("button", { type: "submit" }, "Create");
  const out = h("div", { class: "credentials", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card", "aria-label": "New thing" },
    h("h2", {}, "New thing"),
    err.el,
    h("div", { class: "grid" }, field("Name", name), field("Type", type, "an existing thing type"), field("Attributes", attrs), field("Groups", groups, "existing groups")),
    field("Credentials", cred),
    h("div", {}, submit, " ", h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close")),
    out,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hide();
    submit.disabled = true;
    try {
      const body: any = { name: name.value.trim() };
      if (type.value.trim()) body.type = type.value.trim();
      const a: Record<string, string> = {};
      for (const kv of attrs.value.split(",").map((s) => s.trim()).filter(Boolean)) {
        const [k, ...v] = kv.split("=");
        a[k.trim()] = v.join("=").trim();
      }
      if (Object.keys(a).length) body.attributes = a;
      const g = groups.value.split(",").map((s) => s.trim()).filter(Boolean);
      if (g.length) body.groups = g;
      const thing = await post<Thing>("/things", body);
      reload();
      clear(out, h("p", { class: "ok" }, `Thing ${thing.name} created.`));
      if (cred.value) out.append(await credentialsView(thing.name, cred.value));
    } catch (e) {
      err.show(e);
    } finally {
      submit.disabled = false;
    }
  });
  clear(box, form);
  name.focus();
}

// credentialsView creates a credential and shows it once, with a
// ready-to-paste mosquitto_pub example.
export async function credentialsView(thing: string, type: string): Promise<HTMLElement> {
  const [c, server] = await Promise.all([
    post<any>(`/things/${enc(thing)}/credentials`, { type }),
    get<any>("/server").catch(() => ({})),
  ]);
  const host = location.hostname || "localhost";
  const port = (a?: string, d = "1883") => (a ? a.slice(a.lastIndexOf(":") + 1) : d);
  const topic = `things/${thing}/telemetry`;
  if (type === "secret") {
    const cmd = `mosquitto_pub -h ${host} -p ${port(server.mqtt)} -u ${thing} -P '${c.secret}' -t ${topic} -m '{"temp":21.5}'`;
    return h(
      "div",
      { class: "secret" },
      h("p", {}, h("strong", {}, "Copy the secret now: it is shown only this once.")),
      h("dl", {}, h("dt", {}, "User name"), h("dd", {}, h("code", { "data-testid": "cred-user" }, thing)), h("dt", {}, "Secret"), h("dd", {}, h("code", { "data-testid": "cred-secret" }, c.secret))),
      h("p", {}, "Try it:"),
      h("pre", { "data-testid": "cred-example" }, cmd),
    );
  }
  const cmd = `mosquitto_pub -h ${host} -p ${port(server.mqtts, "8883")} --cafile ca.crt --cert ${thing}.crt --key ${thing}.key -t ${topic} -m '{"temp":21.5}'`;
  return h(
    "div",
    { class: "secret" },
    h("p", {}, h("strong", {}, "Download the key now: it is shown only this once.")),
    h("p", { class: "downloads" }, downloadLink(`${thing}.crt`, `${thing}.crt`, c.certificate), " ", downloadLink(`${thing}.key`, `${thing}.key`, c.privateKey), " ", downloadLink("ca.crt", "ca.crt", c.caCertificate)),
    h("p", {}, "Try it:"),
    h("pre", { "data-testid": "cred-example" }, cmd),
  );
}
