import { enc, get, List } from "./api";
import { clear, errorBox, h, tableWrap } from "./ui";

// Configuration profiles (docs/profiles.md): each profile's target,
// priority and compliance, and the things that are not compliant with the
// keys whose reported value differs. Read-only: profiles are written
// through the API and `mote profile`.

interface Profile {
  name: string;
  description: string;
  target: { group?: string; query?: string };
  priority: number;
}

interface Compliance {
  things: number;
  compliant: number;
  nonCompliant: number;
  items: { thing: string; differing: { key: string; desired: unknown; reported: unknown }[] }[];
  nextCursor?: string;
}

const show = (v: unknown): string => (v === null || v === undefined ? "not reported" : JSON.stringify(v));

export function profilesPage(main: HTMLElement): () => void {
  const err = errorBox();
  const tbody = h("tbody", { "data-testid": "profiles" });
  const detail = h("section", { class: "card", "aria-live": "polite", "data-testid": "noncompliant", hidden: true });
  clear(
    main,
    h("h1", {}, "Profiles"),
    h("p", { class: "muted" }, "Configuration profiles merged into the desired state of their targets, and whether the devices report it."),
    err.el,
    tableWrap(
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ...["Profile", "Target", "Priority", "Compliance", ""].map((c) => h("th", { scope: "col" }, c)))),
        tbody,
      ),
    ),
    detail,
  );

  const showNonCompliant = async (p: Profile) => {
    try {
      const c = await get<Compliance>(`/profiles/${enc(p.name)}/compliance?limit=100`);
      detail.hidden = false;
      clear(
        detail,
        h("h2", {}, `Not compliant with ${p.name}`),
        c.items.length === 0
          ? h("p", { class: "muted" }, "Every thing reports what the profile sets.")
          : tableWrap(
              h(
                "table",
                {},
                h("thead", {}, h("tr", {}, ...["Thing", "Key", "Desired", "Reported"].map((x) => h("th", { scope: "col" }, x)))),
                h(
                  "tbody",
                  {},
                  ...c.items.flatMap((it) =>
                    it.differing.map((d) =>
                      h(
                        "tr",
                        { "data-thing": it.thing },
                        h("td", {}, h("a", { href: `/things/${enc(it.thing)}` }, it.thing)),
                        h("td", {}, h("code", {}, d.key)),
                        h("td", {}, h("code", {}, show(d.desired))),
                        h("td", {}, h("code", {}, show(d.reported))),
                      ),
                    ),
                  ),
                ),
              ),
            ),
        c.nextCursor ? h("p", { class: "muted" }, "More things: see mote profile compliance --all.") : "",
      );
    } catch (e) {
      err.show(e);
    }
  };

  let stopped = false;
  let timer: number | undefined;
  const load = async () => {
    window.clearTimeout(timer);
    try {
      const list = await get<List<Profile>>("/profiles?limit=1000");
      err.hide();
      const rows = await Promise.all(
        list.items.map(async (p) => {
          const c = await get<Compliance>(`/profiles/${enc(p.name)}/compliance?limit=1`);
          const target = p.target.group ? `group ${p.target.group}` : `query ${p.target.query ?? ""}`;
          const view = h("button", { type: "button", class: "small", onclick: () => showNonCompliant(p) }, "Non-compliant things");
          return h(
            "tr",
            { "data-profile": p.name },
            h("td", {}, p.name, p.description ? h("small", { class: "muted" }, h("br"), p.description) : ""),
            h("td", {}, h("code", {}, target)),
            h("td", { class: "num" }, String(p.priority)),
            h(
              "td",
              { "data-testid": "compliance" },
              `${c.compliant} of ${c.things} compliant`,
              c.nonCompliant ? h("span", { class: "badge warn" }, ` ${c.nonCompliant} not`) : "",
            ),
            h("td", { class: "actions" }, view),
          );
        }),
      );
      clear(tbody, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No profiles yet (POST /api/v1/profiles or mote profile create)."))]));
    } catch (e) {
      err.show(e);
    }
    if (!stopped) timer = window.setTimeout(load, 5000);
  };
  load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
