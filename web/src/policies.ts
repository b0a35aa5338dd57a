import { ApiError, del, enc, get, List, post, put } from "./api";
import { canChangeFleet } from "./main";
import { clear, errorBox, field, h, pretty, tableWrap } from "./ui";

// Policies (docs/api.md#policies): what a thing may publish, subscribe to
// and receive. The editor checks the document with POST
// /policies:validate before saving: a syntax error is pointed at (line
// and column, the cursor goes there), a wrong value is named by its field.

interface Policy {
  name: string;
  description: string;
  document: { statements: unknown[] };
}

// validate sends the editor's text as it is, so that the line and column
// the server names are the editor's.
async function validate(text: string): Promise<{ valid: boolean; statements: number }> {
  let res: Response;
  try {
    res = await fetch("/api/v1/policies:validate", {
      method: "POST",
      headers: { "X-Mote-Console": "1", Accept: "application/json", "Content-Type": "application/json" },
      credentials: "same-origin",
      body: text,
    });
  } catch {
    throw new ApiError(0, "The server cannot be reached. Is Mote running?");
  }
  const data = await res.json().catch(() => undefined);
  if (!res.ok) {
    const detail = data?.detail || data?.title || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, data?.field ? `${data.field}: ${detail}` : detail, data?.field);
  }
  return data;
}

// caretAt moves the textarea's cursor to a 1-based line and column.
function caretAt(ta: HTMLTextAreaElement, line: number, col: number): void {
  const lines = ta.value.split("\n");
  let off = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) off += lines[i].length + 1;
  off = Math.min(ta.value.length, off + col - 1);
  ta.focus();
  ta.setSelectionRange(off, Math.min(ta.value.length, off + 1));
}

export function policiesPage(main: HTMLElement): void {
  const err = errorBox();
  const tbody = h("tbody", { "data-testid": "policies" });
  const editor = h("div");
  clear(
    main,
    h("div", { class: "title" }, h("h1", {}, "Policies"), canChangeFleet() ? h("button", { type: "button", onclick: () => policyForm(editor, load) }, "New policy") : null),
    h("p", { class: "muted" }, "Statements that allow or deny publish, subscribe and receive on topics; ${thing} and ${clientid} stand for the device."),
    err.el,
    editor,
    tableWrap(h("table", {}, h("thead", {}, h("tr", {}, ...["Policy", "Statements", ""].map((c) => h("th", { scope: "col" }, c)))), tbody)),
  );

  async function load(): Promise<void> {
    try {
      const page = await get<List<Policy>>("/policies?limit=1000");
      err.hide();
      const rows = page.items.map((p) => {
        const remove = h("button", { type: "button", class: "small danger", "aria-label": `Delete policy ${p.name}` }, "Delete");
        remove.addEventListener("click", async () => {
          if (!confirm(`Delete policy ${p.name}? It is detached everywhere.`)) return;
          try {
            await del(`/policies/${enc(p.name)}`);
            clear(editor);
            load();
          } catch (e) {
            err.show(e);
          }
        });
        return h(
          "tr",
          { "data-policy": p.name },
          h("td", {}, p.name, p.description ? h("small", { class: "muted" }, h("br"), p.description) : ""),
          h("td", { class: "num" }, String(p.document?.statements?.length ?? 0)),
          h(
            "td",
            { class: "actions" },
            h("button", { type: "button", class: "small", "aria-label": `View policy ${p.name}`, onclick: () => viewPolicy(editor, p) }, "View"),
            canChangeFleet()
              ? [" ", h("button", { type: "button", class: "small", "aria-label": `Edit policy ${p.name}`, onclick: () => policyForm(editor, load, p) }, "Edit"), p.name === "default" ? null : [" ", remove]]
              : null,
          ),
        );
      });
      clear(tbody, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: "3", class: "muted" }, "No policies."))]));
    } catch (e) {
      err.show(e);
    }
  }
  load();
}

function viewPolicy(box: HTMLElement, p: Policy): void {
  clear(
    box,
    h(
      "section",
      { class: "card", "aria-label": `Policy ${p.name}` },
      h("h2", {}, `Policy ${p.name}`),
      p.description ? h("p", {}, p.description) : null,
      h("pre", { class: "json", tabindex: "0", "data-testid": "policy-document", "aria-label": `Document of ${p.name}` }, pretty(p.document)),
      h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close"),
    ),
  );
}

const template = {
  statements: [{ effect: "allow", actions: ["publish", "subscribe", "receive"], topics: ["things/${thing}/#"] }],
};

function policyForm(box: HTMLElement, done: () => void, p?: Policy): void {
  const ferr = errorBox();
  const title = p ? `Edit policy ${p.name}` : "New policy";
  const name = h("input", { name: "name", required: true, value: p?.name ?? "", readonly: !!p });
  const description = h("input", { name: "description", value: p?.description ?? "" });
  const doc = h("textarea", { name: "document", rows: 14, spellcheck: "false", class: "code" });
  doc.value = pretty(p?.document ?? template);
  const result = h("p", { role: "status", "aria-live": "polite", "data-testid": "policy-validation" });
  const check = async (): Promise<boolean> => {
    result.className = "";
    try {
      const v = await validate(doc.value);
      result.className = "ok";
      result.textContent = `Valid: ${v.statements} statement${v.statements === 1 ? "" : "s"}.`;
      return true;
    } catch (e) {
      result.className = "error";
      result.textContent = e instanceof Error ? e.message : String(e);
      const m = /line (\d+), column (\d+)/.exec(result.textContent);
      if (m) caretAt(doc, Number(m[1]), Number(m[2]));
      return false;
    }
  };
  const form = h(
    "form",
    { class: "card", "aria-label": title },
    h("h2", {}, title),
    ferr.el,
    h("div", { class: "grid" }, field("Name", name), field("Description", description)),
    field("Document (JSON)", doc, '{"statements": [{"effect": "allow"|"deny", "actions": ["publish", "subscribe", "receive"], "topics": [...]}]}'),
    result,
    h(
      "div",
      {},
      h("button", { type: "button", onclick: () => check() }, "Validate"),
      " ",
      h("button", { type: "submit" }, p ? "Save policy" : "Create policy"),
      " ",
      h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close"),
    ),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    ferr.hide();
    if (!(await check())) return; // nothing is saved while the document is wrong
    try {
      const body = { description: description.value.trim(), document: JSON.parse(doc.value) };
      if (p) await put(`/policies/${enc(p.name)}`, body);
      else await post("/policies", { name: name.value.trim(), ...body });
      clear(box);
      done();
    } catch (e) {
      ferr.show(e);
    }
  });
  clear(box, form);
  (p ? doc : name).focus();
}
