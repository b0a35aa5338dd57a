// Small DOM helpers: the console needs no framework.

type Attrs = Record<string, string | number | boolean | EventListener | undefined | null>;
type Child = Node | string | number | null | undefined | false | Child[];

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2).toLowerCase(), v as EventListener);
    } else if (k === "class") {
      el.className = String(v);
    } else if (k === "value" && "value" in el) {
      (el as unknown as HTMLInputElement).value = String(v);
    } else if (v === true) {
      el.setAttribute(k, "");
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

// An error box that reads the API's problem in words; role=alert so a
// screen reader announces it.
export function errorBox(): { el: HTMLElement; show: (e: unknown) => void; hide: () => void } {
  const el = h("div", { class: "error", role: "alert", hidden: true });
  return {
    el,
    show(e: unknown) {
      el.textContent = e instanceof Error ? e.message : String(e);
      el.hidden = false;
    },
    hide() {
      el.hidden = true;
      el.textContent = "";
    },
  };
}

export function fmtTime(s?: string | number | null): string {
  if (s === undefined || s === null || s === "") return "–";
  const d = new Date(s);
  if (isNaN(d.getTime())) return String(s);
  return d.toLocaleString();
}

export function ago(s?: string | null): string {
  if (!s) return "never";
  const sec = Math.round((Date.now() - new Date(s).getTime()) / 1000);
  if (sec < 5) return "just now";
  if (sec < 60) return `${sec} s ago`;
  if (sec < 3600) return `${Math.round(sec / 60)} min ago`;
  if (sec < 86400) return `${Math.round(sec / 3600)} h ago`;
  return `${Math.round(sec / 86400)} d ago`;
}

export function pretty(v: unknown): string {
  if (v === undefined) return "";
  return JSON.stringify(v, null, 2);
}

// download offers text as a file.
export function downloadLink(label: string, filename: string, text: string): HTMLAnchorElement {
  const url = URL.createObjectURL(new Blob([text], { type: "application/x-pem-file" }));
  return h("a", { href: url, download: filename, class: "button" }, label);
}

export function field(label: string, input: HTMLElement, hint?: string): HTMLElement {
  const id = input.id || "f-" + Math.random().toString(36).slice(2, 9);
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", {}, hint) : null);
}

export function badge(on: boolean, yes: string, no: string): HTMLElement {
  return h("span", { class: on ? "badge on" : "badge off" }, on ? yes : no);
}

// plural says "1 rule", "2 rules".
export function plural(n: number, one: string, many = one + "s"): string {
  return `${n} ${n === 1 ? one : many}`;
}

// tableWrap lets a wide table scroll sideways inside the page instead of
// widening it (a 390 px phone).
export function tableWrap(table: HTMLElement): HTMLElement {
  return h("div", { class: "table-wrap" }, table);
}
