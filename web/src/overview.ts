import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { events, get, Stats } from "./api";
import { alarmBadges } from "./alarms";
import { overviewMap } from "./map";
import { clear, errorBox, field, fmtTime, h, plural } from "./ui";
import { scoped } from "./main";

// The overview: counts from GET /stats (refreshed every few seconds and on
// presence), live rates and presence from the event stream.
export function overviewPage(main: HTMLElement): () => void {
  const err = errorBox();
  // A user scoped to groups gets its things' counts; the fleet-wide
  // parts (message rates, history, map, rules, firmware) are refused to
  // it, so they are not shown.
  const sc = scoped();
  let historyTimer: number | undefined;
  const historyCharts = new Map<string, uPlot>();
  let historyStopped = false;
  const total = h("strong", { class: "num", "data-testid": "things-total" }, "…");
  const connected = h("strong", { class: "num", "data-testid": "things-connected" }, "…");
  const disabled = h("small", { class: "muted", "data-testid": "things-disabled" });
  const rateIn = h("strong", { class: "num", "data-testid": "rate-in" }, "…");
  const rateOut = h("strong", { class: "num", "data-testid": "rate-out" }, "…");
  const presence = h("ul", { class: "events", "aria-live": "polite" });
  const ruleErrors = h("div", { "data-testid": "rule-errors" }, "…");
  const firmware = h("div", { "data-testid": "firmware" }, "…");
  const alarmTile = alarmBadges();
  const fleet = sc ? null : overviewMap();
  clear(
    main,
    h("h1", {}, "Overview"),
    sc ? h("p", { class: "muted", "data-testid": "scoped-note" }, "The counts are of the things in your groups; fleet-wide numbers are not shown to a user scoped to groups.") : null,
    err.el,
    h(
      "section",
      { class: "tiles" },
      h("div", { class: "tile" }, h("span", {}, "Things"), total, disabled),
      h("div", { class: "tile" }, h("span", {}, "Connected"), connected),
      sc ? null : h("div", { class: "tile" }, h("span", {}, "Messages in / s"), rateIn),
      sc ? null : h("div", { class: "tile" }, h("span", {}, "Messages out / s"), rateOut),
      h("div", { class: "tile" }, h("span", {}, h("a", { href: "/alarms" }, "Active alarms")), alarmTile.el),
    ),
    fleet?.el,
    sc ? null : historySection(),
    h("div", { class: "cols" },
      h("section", { class: "card" }, h("h2", {}, "Recent presence"), presence),
      sc ? null : h("section", { class: "card" }, h("h2", {}, "Rules with errors"), ruleErrors),
      sc ? null : h("section", { class: "card" }, h("h2", {}, "Firmware"), firmware),
    ),
  );

  // --- history: GET /stats/history, small charts of the last hour or day ---
  function historySection(): HTMLElement {
    const sel = h("select", { name: "history-window" }, h("option", { value: "1h" }, "Last hour"), h("option", { value: "24h" }, "Last day"));
    const herr = errorBox();
    const box = h("div", { class: "history-charts" });
    const series: [string, string, (p: HistoryPoint) => number][] = [
      ["messages", "Messages / s", (p) => p.messagesPerSecond],
      ["connected", "Connected things", (p) => p.connected],
      ["alarms", "Open alarms", (p) => p.activeAlarms],
    ];
    const load = async () => {
      window.clearTimeout(historyTimer);
      try {
        const hist = await get<{ window: string; points: HistoryPoint[] }>(`/stats/history?window=${sel.value}`);
        herr.hide();
        const xs = hist.points.map((p) => new Date(p.time).getTime() / 1000);
        const ms = sel.value === "24h" ? 86400_000 : 3600_000;
        for (const [id, label, val] of series) {
          const data: uPlot.AlignedData = [xs, hist.points.map(val)];
          let u = historyCharts.get(id);
          if (!u) {
            const fig = h("figure", { class: "chart", "data-testid": `history-${id}`, role: "img", "aria-label": `${label} over the window chosen` }, h("figcaption", {}, label));
            box.append(fig);
            u = new uPlot(
              {
                width: Math.max(240, (box.clientWidth || 900) / 3 - 24),
                height: 140,
                scales: { x: { time: true, range: () => [(Date.now() - ms) / 1000, Date.now() / 1000] } },
                series: [{}, { label, stroke: "#2a6cd6", width: 2, fill: "rgba(42,108,214,0.1)", points: { show: false } }],
                legend: { show: false },
                cursor: { y: false },
              },
              data,
              fig,
            );
            (fig as any).uplot = u; // for the browser tests
            historyCharts.set(id, u);
          } else {
            u.setScale("x", { min: (Date.now() - ms) / 1000, max: Date.now() / 1000 });
            u.setData(data);
          }
        }
      } catch (e) {
        herr.show(e);
      }
      if (!historyStopped) historyTimer = window.setTimeout(load, 30_000);
    };
    sel.addEventListener("change", () => {
      for (const u of historyCharts.values()) u.destroy();
      historyCharts.clear();
      clear(box);
      load();
    });
    load();
    return h("section", { class: "card", "aria-labelledby": "history-h" },
      h("div", { class: "dash-head" }, h("h2", { id: "history-h" }, "History"), h("div", { class: "dash-toolbar" }, field("Window", sel))),
      herr.el,
      box,
    );
  }
  function stopHistory(): void {
    historyStopped = true;
    window.clearTimeout(historyTimer);
    for (const u of historyCharts.values()) u.destroy();
    historyCharts.clear();
  }

  const rates = (inPerSecond: number, outPerSecond: number) => {
    rateIn.textContent = inPerSecond.toFixed(1);
    rateOut.textContent = outPerSecond.toFixed(1);
  };
  let statsTimer: number | undefined;
  let stopped = false;
  const refresh = async () => {
    window.clearTimeout(statsTimer);
    try {
      const st = await get<Stats>("/stats");
      err.hide();
      total.textContent = String(st.things.total);
      connected.textContent = String(st.things.connected);
      disabled.textContent = st.things.disabled ? `${st.things.disabled} disabled` : "";
      if (st.messages && rateIn.textContent === "…") rates(st.messages.inPerSecond, st.messages.outPerSecond);
      const rules = st.rules; // absent for a scoped user
      if (rules) {
        const bad = rules.failing;
        clear(
          ruleErrors,
          bad.length === 0
            ? h("p", { class: "muted" }, `No rule has failed (${plural(rules.total, "rule")}, ${rules.enabled} enabled).`)
            : h("ul", {}, ...bad.map((r) => h("li", {}, h("a", { href: "/rules" }, r.name), ` — ${plural(r.errors, "error")} in ${plural(r.matched, "match", "matches")}`))),
        );
      }
    } catch (e) {
      err.show(e);
    }
    if (!sc) await refreshFirmware();
    if (!stopped) statsTimer = window.setTimeout(refresh, 5000);
  };
  // The fleet's firmware versions (GET /fleet/firmware): what devices
  // report as "firmware" in their classic shadow, most things first.
  const refreshFirmware = async () => {
    try {
      const fw = await get<{ key: string; versions: { version: string; things: number }[] }>("/fleet/firmware");
      const max = Math.max(1, ...fw.versions.map((v) => v.things));
      const total = fw.versions.reduce((a, v) => a + v.things, 0);
      clear(
        firmware,
        fw.versions.length === 0
          ? h("p", { class: "muted" }, "No things yet.")
          : h(
              "table",
              { class: "firmware", "aria-label": "Firmware versions" },
              h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Version"), h("th", { scope: "col" }, "Things"), h("th", { scope: "col" }, h("span", { class: "skip" }, "Share")))),
              h(
                "tbody",
                {},
                ...fw.versions.map((v) =>
                  h(
                    "tr",
                    { "data-version": v.version },
                    h("td", {}, v.version === "" ? h("span", { class: "muted" }, "none reported") : v.version),
                    h("td", { class: "num" }, String(v.things)),
                    h("td", {}, h("span", { class: "fw-bar", style: `width:${(8 * v.things) / max}rem`, role: "img", "aria-label": `${Math.round((100 * v.things) / total)}%` })),
                  ),
                ),
              ),
            ),
      );
    } catch (e) {
      clear(firmware, h("p", { class: "muted" }, e instanceof Error ? e.message : String(e)));
    }
  };
  refresh();
  alarmTile.refresh();
  let alarmTimer: number | undefined;
  const onAlarm = () => {
    if (alarmTimer === undefined) alarmTimer = window.setTimeout(() => { alarmTimer = undefined; alarmTile.refresh(); }, 500);
  };

  let countTimer: number | undefined;
  const addPresence = (e: any) => {
    const ev = e.payload ?? {};
    const thing = ev.thing || e.thing || ev.clientId;
    presence.prepend(
      h(
        "li",
        {},
        h("span", { class: ev.event === "connected" ? "dot on" : "dot off", "aria-hidden": "true" }),
        h("a", { href: `/things/${encodeURIComponent(thing)}` }, thing),
        ` ${ev.event ?? "?"}`,
        ev.reason ? ` (${ev.reason})` : "",
        h("time", {}, " " + fmtTime(ev.time ?? e.time)),
      ),
    );
    while (presence.children.length > 20) presence.lastElementChild!.remove();
    // Counts change with presence; refresh them, at most once a second.
    if (countTimer === undefined) countTimer = window.setTimeout(() => { countTimer = undefined; refresh(); }, 1000);
  };
  const es = events(
    sc ? "presence=1&alarms=1" : "stats=1&presence=1&alarms=1",
    {
      stats: (s) => rates(s.messagesInPerSecond, s.messagesOutPerSecond),
      presence: addPresence,
      alarm: onAlarm,
    },
    () => { refresh(); alarmTile.refresh(); },
  );
  return () => {
    stopped = true;
    stopHistory();
    es.close();
    fleet?.close();
    window.clearTimeout(alarmTimer);
    window.clearTimeout(statsTimer);
    if (countTimer !== undefined) clearTimeout(countTimer);
  };
}

interface HistoryPoint {
  time: string;
  messages: number;
  messagesPerSecond: number;
  connected: number;
  activeAlarms: number;
}
