import { del, enc, get, List, patch, post, Thing } from "./api";
import { canChangeFleet } from "./main";
import { clear, errorBox, field, h, tableWrap } from "./ui";

// Thing groups (docs/api.md#thing-types-and-groups): static groups, whose
// members list the group on themselves, and dynamic groups, whose members
// are what a fleet query selects. Viewers see the list and the members;
// operators also create, delete and change a static group's members.

interface Group {
  name: string;
  description: string;
  dynamic: boolean;
  query?: string;
}

const list = (s: string) =>
  s
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);

export function groupsPage(main: HTMLElement): void {
  const err = errorBox();
  const tbody = h("tbody", { "data-testid": "groups" });
  const formBox = h("div");
  const members = h("section", { class: "card", "aria-live": "polite", "data-testid": "members", hidden: true });
  clear(
    main,
    h(
      "div",
      { class: "title" },
      h("h1", {}, "Groups"),
      canChangeFleet() ? h("button", { type: "button", onclick: () => groupForm(formBox, load) }, "New group") : null,
    ),
    h("p", { class: "muted" }, "Static groups hold the things that list them; a dynamic group holds what its fleet query selects."),
    err.el,
    formBox,
    tableWrap(
      h("table", {}, h("thead", {}, h("tr", {}, ...["Group", "Kind", "Members", ""].map((c) => h("th", { scope: "col" }, c)))), tbody),
    ),
    members,
  );

  async function showMembers(g: Group): Promise<void> {
    const merr = errorBox();
    members.hidden = false;
    try {
      const page = await get<List<{ name: string }>>(`/groups/${enc(g.name)}/things?limit=100`);
      const editable = canChangeFleet() && !g.dynamic;
      const rows = page.items.map((t) =>
        h(
          "li",
          { "data-member": t.name },
          h("a", { href: `/things/${enc(t.name)}` }, t.name),
          editable
            ? [" ", h("button", { type: "button", class: "small danger", "aria-label": `Remove ${t.name} from ${g.name}`, onclick: () => setMember(t.name, false) }, "Remove")]
            : null,
        ),
      );
      let add: HTMLElement | null = null;
      if (editable) {
        const thing = h("input", { name: "member", required: true, placeholder: "thing name" });
        add = h("form", { class: "inline-form", "aria-label": `Add a thing to ${g.name}` }, field("Thing", thing), h("button", { type: "submit" }, "Add"));
        add.addEventListener("submit", (ev) => {
          ev.preventDefault();
          setMember(thing.value.trim(), true);
        });
      }
      clear(
        members,
        h("h2", {}, `Members of ${g.name}`),
        g.dynamic ? h("p", { class: "muted" }, "Selected by ", h("code", {}, g.query ?? ""), "; change the query to change them.") : null,
        merr.el,
        rows.length ? h("ul", { class: "members" }, ...rows) : h("p", { class: "muted" }, "No members."),
        page.nextCursor ? h("p", { class: "muted" }, `The first 100 of ${page.total ?? "more"}: see GET /groups/${g.name}/things.`) : null,
        add,
      );
    } catch (e) {
      clear(members, h("h2", {}, `Members of ${g.name}`), merr.el);
      merr.show(e);
    }
    // A static group's membership is the thing's groups field.
    async function setMember(thing: string, on: boolean): Promise<void> {
      merr.hide();
      try {
        const t = await get<Thing>(`/things/${enc(thing)}`);
        const groups = on ? [...new Set([...t.groups, g.name])] : t.groups.filter((x) => x !== g.name);
        await patch(`/things/${enc(thing)}`, { groups });
        await showMembers(g);
        load();
      } catch (e) {
        merr.show(e);
      }
    }
  }

  async function load(): Promise<void> {
    try {
      const page = await get<List<Group>>("/groups?limit=1000");
      err.hide();
      const rows = await Promise.all(
        page.items.map(async (g) => {
          let count = "?";
          try {
            const m = await get<List<unknown>>(`/groups/${enc(g.name)}/things?limit=1`);
            count = String(m.total ?? m.items.length);
          } catch {
            /* shown as ? */
          }
          const remove = h("button", { type: "button", class: "small danger", "aria-label": `Delete group ${g.name}` }, "Delete");
          remove.addEventListener("click", async () => {
            if (!confirm(`Delete group ${g.name}? Its members stay, without the membership.`)) return;
            try {
              await del(`/groups/${enc(g.name)}`);
              members.hidden = true;
              load();
            } catch (e) {
              err.show(e);
            }
          });
          return h(
            "tr",
            { "data-group": g.name },
            h("td", {}, g.name, g.description ? h("small", { class: "muted" }, h("br"), g.description) : ""),
            h("td", {}, g.dynamic ? ["dynamic: ", h("code", {}, g.query ?? "")] : "static"),
            h("td", { class: "num", "data-testid": "member-count" }, count),
            h(
              "td",
              { class: "actions" },
              h("button", { type: "button", class: "small", "aria-label": `Members of ${g.name}`, onclick: () => showMembers(g) }, "Members"),
              canChangeFleet() ? [" ", remove] : null,
            ),
          );
        }),
      );
      clear(tbody, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No groups yet."))]));
    } catch (e) {
      err.show(e);
    }
  }
  load();
}

function groupForm(box: HTMLElement, done: () => void): void {
  const ferr = errorBox();
  const name = h("input", { name: "name", required: true });
  const description = h("input", { name: "description" });
  const query = h("input", { name: "query", placeholder: "e.g. attributes.site = 'p3' AND connected = true" });
  const form = h(
    "form",
    { class: "card", "aria-label": "New group" },
    h("h2", {}, "New group"),
    ferr.el,
    h("div", { class: "grid" }, field("Name", name), field("Description", description)),
    field("Fleet query", query, "Empty: a static group. A fleet query (docs/fleet-query.md) makes it dynamic."),
    h("div", {}, h("button", { type: "submit" }, "Create group"), " ", h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    ferr.hide();
    try {
      const body: Record<string, string> = { name: name.value.trim() };
      if (description.value.trim()) body.description = description.value.trim();
      if (query.value.trim()) body.query = query.value.trim();
      await post("/groups", body);
      clear(box);
      done();
    } catch (e) {
      ferr.show(e);
    }
  });
  clear(box, form);
  name.focus();
}

export { list as commaList };
