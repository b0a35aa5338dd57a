import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { events, get, Stats } from "./api";
import { clear, errorBox, field, fmtTime, h, plural } from "./ui";

// The overview: counts from GET /stats (refreshed every few seconds and on
// presence), live rates and presence from the event stream.
export function overviewPage(main: HTMLElement): () => void {
  const err = errorBox();
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
  clear(
    main,
    h("h1", {}, "Overview"),
    err.el,
    h(
      "section",
      { class: "tiles" },
      h("div", { class: "tile" }, h("span", {}, "Things"), total, disabled),
      h("div", { class: "tile" }, h("span", {}, "Connected"), connected),
      h("div", { class: "tile" }, h("span", {}, "Messages in / s"), rateIn),
      h("div", { class: "tile" }, h("span", {}, "Messages out / s"), rateOut),
    ),
    historySection(),
    h("div", { class: "cols" },
      h("section", { class: "card" }, h("h2", {}, "Recent presence"), presence),
      h("section", { class: "card" }, h("h2", {}, "Rules with errors"), ruleErrors),
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
      if (rateIn.textContent === "…") rates(st.messages.inPerSecond, st.messages.outPerSecond);
      const bad = st.rules.failing;
      clear(
        ruleErrors,
        bad.length === 0
          ? h("p", { class: "muted" }, `No rule has failed (${plural(st.rules.total, "rule")}, ${st.rules.enabled} enabled).`)
          : h("ul", {}, ...bad.map((r) => h("li", {}, h("a", { href: "/rules" }, r.name), ` — ${plural(r.errors, "error")} in ${plural(r.matched, "match", "matches")}`))),
      );
    } catch (e) {
      err.show(e);
    }
    if (!stopped) statsTimer = window.setTimeout(refresh, 5000);
  };
  refresh();

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
    "stats=1&presence=1",
    {
      stats: (s) => rates(s.messagesInPerSecond, s.messagesOutPerSecond),
      presence: addPresence,
    },
    refresh,
  );
  return () => {
    stopped = true;
    stopHistory();
    es.close();
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
