import { del, enc, get, List, patch, post, put } from "./api";
import { clear, errorBox, field, h, pretty, tableWrap } from "./ui";
import { canOperate } from "./main";

interface Rule {
  name: string;
  sql: string;
  description: string;
  enabled: boolean;
  actions: unknown[];
  errorAction?: unknown;
  metrics?: { matched: number; errors: number }; // since the server started
}

export function rulesPage(main: HTMLElement): void {
  const err = errorBox();
  const tbody = h("tbody");
  const editor = h("div");
  async function load(): Promise<void> {
    err.hide();
    try {
      const list = await get<List<Rule>>("/rules?limit=1000");
      clear(
        tbody,
        ...list.items.map((r) => {
          const c = r.metrics ?? { matched: 0, errors: 0 };
          const toggle = h("button", { type: "button", class: "small" }, r.enabled ? "Disable" : "Enable");
          toggle.addEventListener("click", async () => {
            try {
              await patch(`/rules/${enc(r.name)}`, { enabled: !r.enabled });
              load();
            } catch (e) {
              err.show(e);
            }
          });
          const edit = h("button", { type: "button", class: "small", onclick: () => ruleForm(editor, load, r) }, "Edit");
          const remove = h("button", { type: "button", class: "small danger" }, "Delete");
          remove.addEventListener("click", async () => {
            if (!confirm(`Delete rule ${r.name}?`)) return;
            try {
              await del(`/rules/${enc(r.name)}`);
              load();
            } catch (e) {
              err.show(e);
            }
          });
          return h(
            "tr",
            {},
            h("td", {}, r.name, r.description ? h("small", { class: "muted" }, h("br"), r.description) : ""),
            h("td", {}, h("code", {}, r.sql)),
            h("td", {}, r.enabled ? "enabled" : h("span", { class: "badge warn" }, "disabled")),
            h("td", { class: "num" }, String(c.matched)),
            h("td", { class: c.errors ? "num bad" : "num" }, String(c.errors)),
            h("td", { class: "actions" }, canOperate() ? [edit, " ", toggle, " ", remove] : null),
          );
        }),
      );
    } catch (e) {
      err.show(e);
    }
  }
  clear(
    main,
    h("div", { class: "title" }, h("h1", {}, "Rules"), canOperate() ? h("button", { type: "button", onclick: () => ruleForm(editor, load) }, "New rule") : null),
    editor,
    err.el,
    tableWrap(h("table", {}, h("thead", {}, h("tr", {}, ...["Name", "SQL", "State", "Matched", "Errors", ""].map((c) => h("th", { scope: "col" }, c)))), tbody)),
  );
  load();
}

function ruleForm(box: HTMLElement, reload: () => void, r?: Rule): void {
  const err = errorBox();
  const name = h("input", { name: "name", required: true, value: r?.name ?? "", readonly: !!r });
  const desc = h("input", { name: "description", value: r?.description ?? "" });
  const sql = h("textarea", { name: "sql", rows: 3, spellcheck: "false", required: true }, r?.sql ?? "SELECT temp, topic(2) AS device FROM 'things/+/telemetry' WHERE temp > 50");
  const actions = h("textarea", { name: "actions", rows: 3, spellcheck: "false" }, pretty(r?.actions ?? [{ type: "log" }]));
  const enabled = h("input", { type: "checkbox", name: "enabled", checked: r ? r.enabled : true });
  const save = h("button", { type: "submit" }, r ? "Save rule" : "Create rule");
  // The test panel runs the SQL on a sample message; no action runs.
  const topic = h("input", { name: "topic", value: "things/sensor-1/telemetry" });
  const payload = h("textarea", { name: "sample", rows: 3, spellcheck: "false" }, '{"temp": 61}');
  const out = h("pre", { "data-testid": "rule-test-output", "aria-live": "polite" });
  const terr = errorBox();
  const test = h("button", { type: "button" }, "Test");
  test.addEventListener("click", async () => {
    terr.hide();
    out.textContent = "";
    let p: unknown;
    try {
      p = JSON.parse(payload.value);
    } catch {
      p = payload.value; // a raw (non-JSON) payload
    }
    try {
      const res = await post<any>("/rules/test", { sql: sql.value, topic: topic.value, payload: p });
      out.textContent = res.matched ? "Matched. Output:\n" + pretty(res.output) : "Not matched (FROM or WHERE did not select this message).";
    } catch (e) {
      terr.show(e);
    }
  });
  const form = h(
    "form",
    { class: "card", "aria-label": r ? `Edit rule ${r.name}` : "New rule" },
    h("h2", {}, r ? `Edit rule ${r.name}` : "New rule"),
    err.el,
    h("div", { class: "grid" }, field("Name", name), field("Description", desc)),
    field("SQL", sql),
    field("Actions (JSON array)", actions, 'e.g. [{"type":"republish","topic":"alerts/${device}"}], [{"type":"webhook","url":"https://..."}], [{"type":"telemetry"}]'),
    h("div", { class: "field check" }, h("label", {}, enabled, " Enabled")),
    h("div", {}, save, " ", h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close")),
    h("fieldset", { class: "test" }, h("legend", {}, "Test against a sample message"), terr.el, field("Topic", topic), field("Payload", payload), test, out),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hide();
    let acts: unknown;
    try {
      acts = JSON.parse(actions.value || "[]");
    } catch (e) {
      err.show(`Actions are not valid JSON: ${(e as Error).message}`);
      return;
    }
    const body: any = { sql: sql.value, description: desc.value, enabled: enabled.checked, actions: acts };
    if (r?.errorAction) body.errorAction = r.errorAction;
    try {
      if (r) await put(`/rules/${enc(r.name)}`, body);
      else await post("/rules", { name: name.value.trim(), ...body });
      clear(box);
      reload();
    } catch (e) {
      err.show(e);
    }
  });
  clear(box, form);
  (r ? sql : name).focus();
}
