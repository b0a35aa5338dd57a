// Device models (docs/device-models.md): what a thing type says about its
// devices, read from GET /api/v1/types/{type}. The thing page labels its
// charts, shadow and commands from it.
import { ApiError, enc, get, post } from "./api";
import { errorBox, field, h } from "./ui";

export interface TelemetryKey {
  label?: string;
  unit?: string;
  type?: string;
  min?: number;
  max?: number;
  interval?: string;
}

export interface DeviceModel {
  telemetry?: Record<string, TelemetryKey>;
  properties?: { reported?: any; desired?: any };
  commands?: Record<string, { description?: string; payload?: any }>;
}

// loadModel returns the model of a thing type (null: none, or the type
// cannot be read).
export async function loadModel(type: string | undefined): Promise<DeviceModel | null> {
  if (!type) return null;
  try {
    const t = await get<{ model?: DeviceModel }>(`/types/${enc(type)}`);
    return t.model ?? null;
  } catch (e) {
    if (e instanceof ApiError) return null;
    throw e;
  }
}

// caption is a telemetry key's label with its unit: "Temperature (°C)".
export function caption(m: DeviceModel | null, key: string): string {
  const t = m?.telemetry?.[key];
  const label = t?.label || key;
  return t?.unit ? `${label} (${t.unit})` : label;
}

// withUnit is a value with its key's unit: "21.5 °C".
export function withUnit(m: DeviceModel | null, key: string, v: unknown): string {
  const u = m?.telemetry?.[key]?.unit;
  return u ? `${v} ${u}` : String(v);
}

// fields lists the labelled properties of a state by a schema's
// "properties" (title or the key), then the other keys.
export function labelledFields(schema: any, state: Record<string, unknown>, testid: string): HTMLElement | null {
  const props: Record<string, any> = schema?.properties ?? {};
  if (Object.keys(props).length === 0) return null;
  const rows: HTMLElement[] = [];
  for (const [k, p] of Object.entries(props)) {
    if (!(k in state)) continue;
    rows.push(h("dt", {}, p?.title || k), h("dd", { "data-key": k }, fmtValue(state[k])));
  }
  for (const [k, v] of Object.entries(state)) {
    if (!(k in props)) rows.push(h("dt", {}, k), h("dd", { "data-key": k }, fmtValue(v)));
  }
  return h("dl", { class: "facts", "data-testid": testid }, ...rows);
}

function fmtValue(v: unknown): string {
  if (v === null || v === undefined) return "–";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

// simpleObject reports whether a payload schema is an object of primitive
// properties a form can ask for.
function simpleObject(s: any): boolean {
  if (!s || typeof s !== "object") return false;
  const types = Array.isArray(s.type) ? s.type : [s.type];
  if (!types.includes("object") || !s.properties) return false;
  return Object.values(s.properties).every((p: any) => {
    const t = Array.isArray(p?.type) ? p.type.filter((x: string) => x !== "null")[0] : p?.type;
    return ["string", "number", "integer", "boolean"].includes(t) || Array.isArray(p?.enum);
  });
}

// commandForms is a form per command of the model: fields from its payload
// schema when it is a simple object, else a JSON text area. onSent runs
// after a command is created.
export function commandForms(m: DeviceModel, path: string, onSent: () => void): HTMLElement | null {
  const cmds = Object.entries(m.commands ?? {});
  if (cmds.length === 0) return null;
  return h(
    "div",
    { class: "model-commands", "data-testid": "model-commands" },
    ...cmds.map(([name, c]) => commandForm(name, c, path, onSent)),
  );
}

function commandForm(name: string, c: { description?: string; payload?: any }, path: string, onSent: () => void): HTMLElement {
  const ferr = errorBox();
  const s = c.payload;
  const inputs: { key: string; el: HTMLInputElement | HTMLSelectElement; type: string }[] = [];
  const controls: HTMLElement[] = [];
  let json: HTMLTextAreaElement | null = null;
  if (s && simpleObject(s)) {
    const required: string[] = s.required ?? [];
    for (const [k, p] of Object.entries<any>(s.properties)) {
      const t = Array.isArray(p.type) ? p.type.filter((x: string) => x !== "null")[0] : p.type;
      const label = (p.title || k) + (required.includes(k) ? "" : " (optional)");
      let el: HTMLInputElement | HTMLSelectElement;
      if (Array.isArray(p.enum)) {
        el = h("select", { name: k }, ...(required.includes(k) ? [] : [h("option", { value: "" }, "–")]), ...p.enum.map((v: unknown) => h("option", { value: JSON.stringify(v) }, String(v)))) as HTMLSelectElement;
        inputs.push({ key: k, el, type: "enum" });
      } else if (t === "boolean") {
        el = h("input", { name: k, type: "checkbox" }) as HTMLInputElement;
        inputs.push({ key: k, el, type: t });
      } else {
        const attrs: Record<string, any> = { name: k, type: t === "string" ? "text" : "number" };
        if (t === "integer") attrs.step = 1;
        if (t === "number") attrs.step = "any";
        if (p.minimum !== undefined) attrs.min = p.minimum;
        if (p.maximum !== undefined) attrs.max = p.maximum;
        if (required.includes(k)) attrs.required = true;
        el = h("input", attrs) as HTMLInputElement;
        inputs.push({ key: k, el, type: t });
      }
      controls.push(field(label, el));
    }
  } else if (s) {
    json = h("textarea", { name: "payload", rows: 2, spellcheck: "false" }, "{}") as HTMLTextAreaElement;
    controls.push(field("Payload (JSON)", json));
  }
  const send = h("button", { type: "submit" }, `Send ${name}`);
  const form = h(
    "form",
    { class: "command-form", "aria-label": `Command ${name}`, "data-command": name },
    h("h3", {}, name),
    c.description ? h("p", { class: "muted" }, c.description) : "",
    ferr.el,
    ...controls,
    send,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    ferr.hide();
    let payload: unknown = undefined;
    if (json) {
      try {
        payload = JSON.parse(json.value || "null");
      } catch (e) {
        ferr.show(`Payload is not valid JSON: ${(e as Error).message}`);
        return;
      }
    } else if (inputs.length) {
      const p: Record<string, unknown> = {};
      for (const i of inputs) {
        if (i.type === "boolean") p[i.key] = (i.el as HTMLInputElement).checked;
        else if (i.type === "enum") {
          if (i.el.value !== "") p[i.key] = JSON.parse(i.el.value);
        } else if (i.el.value !== "") p[i.key] = i.type === "string" ? i.el.value : Number(i.el.value);
      }
      payload = p;
    }
    try {
      await post(`${path}/commands`, { name, payload });
      onSent();
    } catch (e) {
      ferr.show(e);
    }
  });
  return form;
}
