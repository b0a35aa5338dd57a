import { get, List } from "./api";
import { clear, errorBox, field, fmtTime, h, pretty, tableWrap } from "./ui";

// An audit entry as GET /api/v1/audit answers it (docs/audit.md).
interface AuditEntry {
  id: string;
  time: string;
  actor: { kind: string; name: string; id?: string };
  action: string;
  target: { kind: string; name: string };
  status: number;
  source: string;
  requestId: string;
  before?: unknown;
  after?: unknown;
  documentsOmitted?: boolean;
}

// The audit log (admin only): filters, newest first, a page at a time.
// Opened with ?target=thing:NAME from a thing's page, it is that thing's
// trail.
export function auditPage(main: HTMLElement): void {
  const err = errorBox();
  const params = new URLSearchParams(location.search);
  const actor = h("input", { name: "actor", value: params.get("actor") ?? "", placeholder: "user or token name" });
  const action = h("input", { name: "action", value: params.get("action") ?? "", placeholder: "thing.create or thing.*" });
  const target = h("input", { name: "target", value: params.get("target") ?? "", placeholder: "thing:sensor-1" });
  const since = h("input", { name: "since", type: "datetime-local" });
  const tbody = h("tbody", { "data-testid": "audit-rows" });
  const more = h("button", { type: "button", hidden: true }, "Older entries");
  let cursor = "";

  function query(): string {
    const q = new URLSearchParams({ limit: "50" });
    for (const [k, el] of [["actor", actor], ["action", action], ["target", target]] as const) {
      if (el.value.trim()) q.set(k, el.value.trim());
    }
    if (since.value) q.set("since", new Date(since.value).toISOString().replace(/\.\d+Z$/, "Z"));
    if (cursor) q.set("cursor", cursor);
    return q.toString();
  }

  async function load(append: boolean): Promise<void> {
    err.hide();
    if (!append) cursor = "";
    try {
      const page = await get<List<AuditEntry>>(`/audit?${query()}`);
      const rows = page.items.map((e) =>
        h(
          "tr",
          {},
          h("td", {}, fmtTime(e.time)),
          h("td", {}, `${e.actor.kind}: ${e.actor.name}`),
          h("td", {}, h("code", {}, e.action)),
          h("td", {}, e.target.name ? `${e.target.kind}: ${e.target.name}` : e.target.kind),
          h("td", { class: e.status >= 400 ? "num bad" : "num" }, String(e.status)),
          h("td", {}, e.source),
          h(
            "td",
            {},
            e.before !== undefined || e.after !== undefined
              ? h(
                  "details",
                  {},
                  h("summary", {}, "Documents"),
                  e.before !== undefined ? h("div", {}, h("strong", {}, "Before"), h("pre", {}, pretty(e.before))) : null,
                  e.after !== undefined ? h("div", {}, h("strong", {}, "After"), h("pre", {}, pretty(e.after))) : null,
                )
              : e.documentsOmitted
                ? h("small", { class: "muted" }, "too large to keep")
                : "",
          ),
        ),
      );
      if (append) tbody.append(...rows);
      else clear(tbody, ...rows);
      if (!append && rows.length === 0) clear(tbody, h("tr", {}, h("td", { colspan: 7 }, "No entries.")));
      cursor = page.nextCursor ?? "";
      more.hidden = !cursor;
    } catch (e) {
      err.show(e);
    }
  }

  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter the audit log" },
    field("Actor", actor),
    field("Action", action),
    field("Target", target),
    field("Since", since),
    h("button", { type: "submit" }, "Filter"),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    load(false);
  });
  more.addEventListener("click", () => load(true));
  clear(
    main,
    h("div", { class: "title" }, h("h1", {}, "Audit log")),
    h("p", { class: "muted" }, "Every change made through the API, newest first. Secrets are never recorded."),
    form,
    err.el,
    tableWrap(
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ...["Time", "Actor", "Action", "Target", "Status", "Source", ""].map((c) => h("th", { scope: "col" }, c)))),
        tbody,
      ),
    ),
    more,
  );
  load(false);
}
