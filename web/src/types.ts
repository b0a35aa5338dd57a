import { del, enc, get, List, patch, post } from "./api";
import { commaList } from "./groups";
import { canChangeFleet } from "./main";
import { clear, errorBox, field, h, pretty, tableWrap } from "./ui";

// Thing types (docs/api.md#thing-types-and-groups): a description, the
// policies every thing of the type gets, and the device model
// (docs/device-models.md), shown read-only here.

interface ThingType {
  name: string;
  description: string;
  policies: string[];
  model?: unknown;
}

export function typesPage(main: HTMLElement): void {
  const err = errorBox();
  const tbody = h("tbody", { "data-testid": "types" });
  const formBox = h("div");
  const modelBox = h("section", { class: "card", "data-testid": "type-model", hidden: true });
  clear(
    main,
    h("div", { class: "title" }, h("h1", {}, "Types"), canChangeFleet() ? h("button", { type: "button", onclick: () => typeForm(formBox, load) }, "New type") : null),
    h("p", { class: "muted" }, "What a kind of device is: its description, the policies its things get, and its device model."),
    err.el,
    formBox,
    tableWrap(h("table", {}, h("thead", {}, h("tr", {}, ...["Type", "Policies", "Device model", ""].map((c) => h("th", { scope: "col" }, c)))), tbody)),
    modelBox,
  );

  const showModel = (t: ThingType) => {
    modelBox.hidden = false;
    clear(
      modelBox,
      h("h2", {}, `Device model of ${t.name}`),
      h("p", { class: "muted" }, "Read-only here: PATCH /api/v1/types/", t.name, ' with {"model": ...} changes it (docs/device-models.md).'),
      h("pre", { class: "json", tabindex: "0", "aria-label": `Device model of ${t.name}` }, pretty(t.model)),
    );
  };

  async function load(): Promise<void> {
    try {
      const page = await get<List<ThingType>>("/types?limit=1000");
      err.hide();
      const rows = page.items.map((t) => {
        const remove = h("button", { type: "button", class: "small danger", "aria-label": `Delete type ${t.name}` }, "Delete");
        remove.addEventListener("click", async () => {
          if (!confirm(`Delete type ${t.name}?`)) return;
          try {
            await del(`/types/${enc(t.name)}`);
            load();
          } catch (e) {
            err.show(e);
          }
        });
        return h(
          "tr",
          { "data-type": t.name },
          h("td", {}, t.name, t.description ? h("small", { class: "muted", "data-testid": "type-description" }, h("br"), t.description) : ""),
          h("td", {}, t.policies?.length ? t.policies.join(", ") : h("span", { class: "muted" }, "none")),
          h(
            "td",
            {},
            t.model
              ? h("button", { type: "button", class: "small", "aria-label": `Device model of ${t.name}`, onclick: () => showModel(t) }, "View model")
              : h("span", { class: "muted" }, "none"),
          ),
          h(
            "td",
            { class: "actions" },
            canChangeFleet()
              ? [h("button", { type: "button", class: "small", "aria-label": `Edit type ${t.name}`, onclick: () => typeForm(formBox, load, t) }, "Edit"), " ", remove]
              : null,
          ),
        );
      });
      clear(tbody, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No types yet."))]));
    } catch (e) {
      err.show(e);
    }
  }
  load();
}

function typeForm(box: HTMLElement, done: () => void, t?: ThingType): void {
  const ferr = errorBox();
  const title = t ? `Edit type ${t.name}` : "New type";
  const name = h("input", { name: "name", required: true, value: t?.name ?? "", readonly: !!t });
  const description = h("input", { name: "description", value: t?.description ?? "" });
  const policies = h("input", { name: "policies", value: t?.policies?.join(", ") ?? "", placeholder: "default, sensors" });
  const form = h(
    "form",
    { class: "card", "aria-label": title },
    h("h2", {}, title),
    ferr.el,
    h("div", { class: "grid" }, field("Name", name), field("Description", description), field("Policies", policies, "Comma-separated policy names.")),
    h("div", {}, h("button", { type: "submit" }, t ? "Save type" : "Create type"), " ", h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    ferr.hide();
    try {
      const body = { description: description.value.trim(), policies: commaList(policies.value) };
      if (t) await patch(`/types/${enc(t.name)}`, body);
      else await post("/types", { name: name.value.trim(), ...body });
      clear(box);
      done();
    } catch (e) {
      ferr.show(e);
    }
  });
  clear(box, form);
  (t ? description : name).focus();
}
