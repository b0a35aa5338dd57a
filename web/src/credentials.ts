import { enc, get, List, post } from "./api";
import type { Me } from "./api";
import { clear, downloadLink, errorBox, field, fmtTime, h } from "./ui";

// A thing's credentials (docs/credentials.md), from the documented REST
// API: list, add, rotate with a window, revoke. What was just made is
// shown once; viewers see the list only.

interface Credential {
  id: string;
  type: string;
  fingerprint?: string;
  certificate?: string;
  notAfter?: string;
  revoked: boolean;
  revokedAt?: string;
  createdAt: string;
}

interface NewCredential extends Credential {
  secret?: string;
  privateKey?: string;
  key?: string;
  caCertificate?: string;
  previous?: Credential;
}

function status(c: Credential): string {
  if (c.revoked) return "revoked";
  if (c.notAfter && Date.parse(c.notAfter) <= Date.now()) return "expired";
  return "active";
}

// shownOnce presents the parts of a new credential that are shown only now.
function shownOnce(thing: string, c: NewCredential): HTMLElement {
  const parts: HTMLElement[] = [];
  if (c.secret) parts.push(h("dt", {}, "Secret"), h("dd", {}, h("code", { "data-testid": "cred-once-secret" }, c.secret)));
  if (c.key) parts.push(h("dt", {}, "Key (base64)"), h("dd", {}, h("code", { "data-testid": "cred-once-key" }, c.key)));
  const downloads: HTMLElement[] = [];
  if (c.certificate) downloads.push(downloadLink(`${thing}.crt`, `${thing}.crt`, c.certificate));
  if (c.privateKey) downloads.push(downloadLink(`${thing}.key`, `${thing}.key`, c.privateKey));
  if (c.caCertificate) downloads.push(downloadLink("ca.crt", "ca.crt", c.caCertificate));
  return h(
    "div",
    { class: "secret", "data-testid": "cred-once", role: "status" },
    h("p", {}, h("strong", {}, `Credential ${c.id}: copy it now, it is shown only this once.`)),
    c.previous ? h("p", {}, `It replaces ${c.previous.id}, valid until ${fmtTime(c.previous.notAfter)}.`) : "",
    parts.length ? h("dl", {}, ...parts) : "",
    downloads.length ? h("p", { class: "downloads" }, ...downloads.flatMap((d) => [d, " "])) : "",
  );
}

// credentialsCard returns the Credentials section of a thing's page.
export function credentialsCard(thing: string): HTMLElement {
  const path = `/things/${enc(thing)}/credentials`;
  const box = h("section", { class: "card", "aria-labelledby": "creds-h" });
  const err = errorBox();
  const rows = h("tbody", { "data-testid": "credentials" });
  const once = h("div", { "aria-live": "polite" });
  const actions = h("div", {});
  let canWrite = false;
  const windowSel = h("select", { name: "rotation-window" }, h("option", { value: "" }, "server default"), h("option", { value: "1h" }, "1 hour"), h("option", { value: "24h" }, "24 hours"), h("option", { value: "168h" }, "7 days"), h("option", { value: "0s" }, "none (ends now)"));

  async function load(): Promise<void> {
    try {
      const list = await get<List<Credential>>(path + "?limit=200");
      clear(
        rows,
        ...list.items.map((c) => {
          const st = status(c);
          const cells: HTMLElement[] = [
            h("td", {}, h("code", {}, c.id)),
            h("td", {}, c.type),
            h("td", {}, c.fingerprint ? h("code", { title: c.fingerprint }, c.fingerprint.slice(0, 16) + "…") : "—"),
            h("td", {}, fmtTime(c.createdAt)),
            h("td", {}, c.notAfter ? fmtTime(c.notAfter) : "never"),
            h("td", { "data-testid": "cred-status" }, st === "revoked" ? `revoked ${fmtTime(c.revokedAt)}` : st),
          ];
          const acts = h("td", {});
          if (canWrite && st === "active") {
            const rotate = h("button", { type: "button", "aria-label": `Rotate credential ${c.id}` }, "Rotate");
            rotate.addEventListener("click", () => rotateOne(c));
            const revoke = h("button", { type: "button", class: "danger", "aria-label": `Revoke credential ${c.id}` }, "Revoke");
            revoke.addEventListener("click", () => revokeOne(c));
            acts.append(rotate, " ", revoke);
          }
          cells.push(acts);
          return h("tr", { "data-id": c.id }, ...cells);
        }),
      );
      if (!list.items.length) clear(rows, h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No credentials: the thing cannot connect.")));
      err.hide();
    } catch (e) {
      err.show(e);
    }
  }
  async function rotateOne(c: Credential): Promise<void> {
    const win = windowSel.value;
    if (!confirm(`Rotate credential ${c.id}? The old one stays valid ${win ? "for " + win : "for the server's rotation window"}, then its connections are closed.`)) return;
    try {
      const nc = await post<NewCredential>(`${path}/${enc(c.id)}/rotate`, win ? { window: win } : {});
      clear(once, shownOnce(thing, nc));
      await load();
    } catch (e) {
      err.show(e);
    }
  }
  async function revokeOne(c: Credential): Promise<void> {
    if (!confirm(`Revoke credential ${c.id}? Connections using it are closed at once.`)) return;
    try {
      await post(`${path}/${enc(c.id)}/revoke`, {});
      clear(once);
      await load();
    } catch (e) {
      err.show(e);
    }
  }

  const typeSel = h("select", { name: "credential-type" }, h("option", { value: "secret" }, "secret"), h("option", { value: "x509" }, "X.509 certificate"), h("option", { value: "symmetricKey" }, "symmetric key (Azure SAS)"));
  const add = h("button", { type: "submit" }, "Add credential");
  const form = h("form", { class: "inline-form", "aria-label": "Add a credential" }, field("Type", typeSel), add);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    add.disabled = true;
    try {
      const nc = await post<NewCredential>(path, { type: typeSel.value });
      clear(once, shownOnce(thing, nc));
      await load();
    } catch (e) {
      err.show(e);
    } finally {
      add.disabled = false;
    }
  });

  clear(
    box,
    h("h2", { id: "creds-h" }, "Credentials"),
    err.el,
    actions,
    once,
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ...["ID", "Type", "Fingerprint", "Created", "Expires", "Status", ""].map((c) => h("th", { scope: "col" }, c)))), rows)),
  );
  get<Me>("/auth/me").then(
    (m) => {
      canWrite = m.role === "admin" || m.role === "operator";
      if (canWrite) clear(actions, form, field("Rotation window", windowSel));
      load();
    },
    () => load(),
  );
  return box;
}
