import { events, get, List, ruleCounters, Thing } from "./api";
import { clear, errorBox, fmtTime, h } from "./ui";

// countThings pages through the list (at most a few pages) to count.
async function countThings(query: string): Promise<string> {
  let n = 0;
  let cursor = "";
  for (let i = 0; i < 10; i++) {
    const page = await get<List<Thing>>(`/things?limit=1000${query}${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}`);
    n += page.items.length;
    if (!page.nextCursor) return String(n);
    cursor = page.nextCursor;
  }
  return `${n}+`;
}

export function overviewPage(main: HTMLElement): () => void {
  const err = errorBox();
  const total = h("strong", { class: "num", "data-testid": "things-total" }, "…");
  const connected = h("strong", { class: "num", "data-testid": "things-connected" }, "…");
  const rateIn = h("strong", { class: "num", "data-testid": "rate-in" }, "…");
  const rateOut = h("strong", { class: "num", "data-testid": "rate-out" }, "…");
  const presence = h("ul", { class: "events", "aria-live": "polite" });
  const ruleErrors = h("div", {}, "…");
  clear(
    main,
    h("h1", {}, "Overview"),
    err.el,
    h(
      "section",
      { class: "tiles" },
      h("div", { class: "tile" }, h("span", {}, "Things"), total),
      h("div", { class: "tile" }, h("span", {}, "Connected"), connected),
      h("div", { class: "tile" }, h("span", {}, "Messages in / s"), rateIn),
      h("div", { class: "tile" }, h("span", {}, "Messages out / s"), rateOut),
    ),
    h("div", { class: "cols" },
      h("section", { class: "card" }, h("h2", {}, "Recent presence"), presence),
      h("section", { class: "card" }, h("h2", {}, "Rules with errors"), ruleErrors),
    ),
  );

  const refreshCounts = () =>
    Promise.all([countThings(""), countThings("&connected=true")])
      .then(([t, c]) => {
        total.textContent = t;
        connected.textContent = c;
      })
      .catch((e) => err.show(e));
  refreshCounts();

  get<List<{ name: string; enabled: boolean }>>("/rules?limit=1000")
    .then(async (rules) => {
      const counters = await ruleCounters();
      const bad = rules.items.filter((r) => (counters.get(r.name)?.errors ?? 0) > 0);
      clear(
        ruleErrors,
        bad.length === 0
          ? h("p", { class: "muted" }, `No rule has failed (${rules.items.length} rules).`)
          : h("ul", {}, ...bad.map((r) => h("li", {}, h("a", { href: "/rules" }, r.name), ` — ${counters.get(r.name)!.errors} errors`))),
      );
    })
    .catch((e) => err.show(e));

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
    if (countTimer === undefined) countTimer = window.setTimeout(() => { countTimer = undefined; refreshCounts(); }, 1000);
  };
  const es = events("stats=1&presence=1", {
    stats: (s) => {
      rateIn.textContent = s.messagesInPerSecond.toFixed(1);
      rateOut.textContent = s.messagesOutPerSecond.toFixed(1);
    },
    presence: addPresence,
  });
  return () => {
    es.close();
    if (countTimer !== undefined) clearTimeout(countTimer);
  };
}
