import { del, enc, get, List, patch, post } from "./api";
import { commaList } from "./groups";
import { canChangeFleet } from "./main";
import { clear, errorBox, field, fmtTime, h, tableWrap } from "./ui";

// Enrollment groups and claim tokens (docs/provisioning.md). A
// symmetric-key group's primary key and a claim's token are in the
// creating answer only: the page shows them once. An x509CA group's CA
// is verified by proof of possession: a certificate with the
// verification code as its CN, signed by the CA.

interface Enrollment {
  name: string;
  attestation: { type: string; caFingerprint?: string; verified?: boolean; mode?: string; primaryKey?: string };
  type?: string;
  groups: string[];
  enabled: boolean;
  maxDevices: number;
  namePattern?: string;
  expiresAt?: string;
  registered: number;
}

interface Claim {
  id: string;
  token?: string;
  thing?: string;
  enrollment?: string;
  expiresAt: string;
  redeemed: boolean;
  redeemedAt?: string;
  redeemedThing?: string;
  qr?: { payload: string; png: string };
}

export function enrollmentsPage(main: HTMLElement): void {
  const err = errorBox();
  const tbody = h("tbody", { "data-testid": "enrollments" });
  const formBox = h("div");
  const verifyBox = h("div");
  clear(
    main,
    h("div", { class: "title" }, h("h1", {}, "Enrollment groups"), canChangeFleet() ? h("button", { type: "button", onclick: () => enrollmentForm(formBox, load) }, "New enrollment group") : null),
    h("p", { class: "muted" }, "Devices register themselves with a key derived from the group's, or with a certificate of the group's CA. ", h("a", { href: "/claims" }, "Claim tokens"), " enroll one device each."),
    err.el,
    formBox,
    verifyBox,
    tableWrap(
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ...["Group", "Attestation", "Registered", "State", ""].map((c) => h("th", { scope: "col" }, c)))),
        tbody,
      ),
    ),
  );

  async function load(): Promise<void> {
    try {
      const page = await get<List<Enrollment>>("/enrollments?limit=1000");
      err.hide();
      const rows = page.items.map((g) => {
        const a = g.attestation;
        const toggle = h("button", { type: "button", class: "small", "aria-label": `${g.enabled ? "Disable" : "Enable"} ${g.name}` }, g.enabled ? "Disable" : "Enable");
        toggle.addEventListener("click", async () => {
          try {
            await patch(`/enrollments/${enc(g.name)}`, { enabled: !g.enabled });
            load();
          } catch (e) {
            err.show(e);
          }
        });
        const remove = h("button", { type: "button", class: "small danger", "aria-label": `Delete ${g.name}` }, "Delete");
        remove.addEventListener("click", async () => {
          if (!confirm(`Delete enrollment group ${g.name}? Its registrations and claims go; its things stay.`)) return;
          try {
            await del(`/enrollments/${enc(g.name)}`);
            load();
          } catch (e) {
            err.show(e);
          }
        });
        const needsProof = a.type === "x509CA" && !a.verified;
        return h(
          "tr",
          { "data-enrollment": g.name },
          h("td", {}, g.name, g.groups?.length ? h("small", { class: "muted" }, h("br"), "into ", g.groups.join(", ")) : ""),
          h(
            "td",
            {},
            a.type === "x509CA" ? `X.509 CA${a.mode ? ` (${a.mode})` : ""}` : "symmetric key",
            a.type === "x509CA" ? h("span", { class: a.verified ? "badge on" : "badge warn", "data-testid": "ca-state" }, a.verified ? "verified" : "not verified") : "",
          ),
          h("td", { class: "num", "data-testid": "registered" }, g.maxDevices ? `${g.registered} of ${g.maxDevices}` : String(g.registered)),
          h("td", {}, h("span", { class: g.enabled ? "badge on" : "badge off" }, g.enabled ? "enabled" : "disabled"), g.expiresAt ? h("small", { class: "muted" }, h("br"), "until ", fmtTime(g.expiresAt)) : ""),
          h(
            "td",
            { class: "actions" },
            canChangeFleet()
              ? [
                  needsProof ? [h("button", { type: "button", class: "small", "aria-label": `Verify the CA of ${g.name}`, onclick: () => verifyForm(verifyBox, g.name, load) }, "Verify CA"), " "] : null,
                  toggle,
                  " ",
                  remove,
                ]
              : null,
          ),
        );
      });
      clear(tbody, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No enrollment groups yet."))]));
    } catch (e) {
      err.show(e);
    }
  }
  load();
}

function enrollmentForm(box: HTMLElement, done: () => void): void {
  const ferr = errorBox();
  const name = h("input", { name: "name", required: true });
  const kind = h("select", { name: "attestation" }, h("option", { value: "symmetricKey" }, "Symmetric key"), h("option", { value: "x509CA" }, "X.509 CA certificate"));
  const ca = h("textarea", { name: "caCertificate", rows: 6, class: "code", placeholder: "-----BEGIN CERTIFICATE-----" });
  const caFile = h("input", { name: "caFile", type: "file", accept: ".pem,.crt,.cer" });
  const mode = h("select", { name: "mode" }, h("option", { value: "jitr" }, "Just-in-time registration"), h("option", { value: "claim" }, "Claim certificates (fleet provisioning)"));
  const caFields = h("div", { hidden: true }, field("CA certificate (PEM)", ca), field("Or upload it", caFile), field("Mode", mode));
  const type = h("input", { name: "type" });
  const groups = h("input", { name: "groups", placeholder: "plant-3" });
  const maxDevices = h("input", { name: "maxDevices", type: "number", min: "0", value: "0" });
  const pattern = h("input", { name: "namePattern", placeholder: "^sensor-[0-9]+$" });
  const created = h("div");
  kind.addEventListener("change", () => (caFields.hidden = kind.value !== "x509CA"));
  caFile.addEventListener("change", async () => {
    const f = caFile.files?.[0];
    if (f) ca.value = await f.text();
  });
  const form = h(
    "form",
    { class: "card", "aria-label": "New enrollment group" },
    h("h2", {}, "New enrollment group"),
    ferr.el,
    h("div", { class: "grid" }, field("Name", name), field("Attestation", kind), field("Thing type", type), field("Groups", groups, "Comma-separated."), field("Most devices", maxDevices, "0: no limit"), field("Name pattern", pattern, "A regular expression registration ids must match.")),
    caFields,
    h("div", {}, h("button", { type: "submit" }, "Create enrollment group"), " ", h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close")),
    created,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    ferr.hide();
    const attestation: Record<string, string> = { type: kind.value };
    if (kind.value === "x509CA") {
      attestation.caCertificate = ca.value;
      attestation.mode = mode.value;
    }
    const body: Record<string, unknown> = { name: name.value.trim(), attestation, groups: commaList(groups.value), maxDevices: Number(maxDevices.value) || 0 };
    if (type.value.trim()) body.type = type.value.trim();
    if (pattern.value.trim()) body.namePattern = pattern.value.trim();
    try {
      const g = await post<Enrollment>("/enrollments", body);
      done();
      if (g.attestation.primaryKey) {
        const key = h("input", { readonly: true, value: g.attestation.primaryKey, "data-testid": "primary-key", class: "secret" });
        clear(
          box,
          h(
            "div",
            { class: "card", role: "status" },
            h("p", {}, `Enrollment group ${g.name} created. Its primary key is shown only this once: devices derive their keys from it (docs/provisioning.md).`),
            field("Primary key (base64)", key),
            h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Done"),
          ),
        );
        key.select();
      } else {
        clear(box);
      }
    } catch (e) {
      ferr.show(e);
    }
  });
  clear(box, form);
  name.focus();
}

// verifyForm is the CA's proof of possession: a fresh code, then the
// certificate with that CN signed by the CA.
async function verifyForm(box: HTMLElement, name: string, done: () => void): Promise<void> {
  const ferr = errorBox();
  const cert = h("textarea", { name: "certificate", rows: 6, class: "code", placeholder: "-----BEGIN CERTIFICATE-----" });
  const certFile = h("input", { name: "certificateFile", type: "file", accept: ".pem,.crt,.cer" });
  certFile.addEventListener("change", async () => {
    const f = certFile.files?.[0];
    if (f) cert.value = await f.text();
  });
  const codeBox = h("p", { "data-testid": "verification-code" }, "…");
  const form = h(
    "form",
    { class: "card", "aria-label": `Verify the CA of ${name}` },
    h("h2", {}, `Verify the CA of ${name}`),
    ferr.el,
    codeBox,
    field("Verification certificate (PEM)", cert),
    field("Or upload it", certFile),
    h("div", {}, h("button", { type: "submit" }, "Verify"), " ", h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    ferr.hide();
    try {
      await post(`/enrollments/${enc(name)}/verify`, { certificate: cert.value });
      clear(box);
      done();
    } catch (e) {
      ferr.show(e);
    }
  });
  clear(box, form);
  try {
    const v = await get<{ verificationCode: string; expiresAt: string }>(`/enrollments/${enc(name)}/verification-code`);
    clear(codeBox, "Sign a certificate with the common name ", h("code", {}, v.verificationCode), ` with the group's CA key before ${fmtTime(v.expiresAt)}, and give it here.`);
  } catch (e) {
    ferr.show(e);
  }
}

export function claimsPage(main: HTMLElement): void {
  const err = errorBox();
  const tbody = h("tbody", { "data-testid": "claims" });
  const shown = h("div");
  let form: HTMLElement | null = null;
  if (canChangeFleet()) {
    const ferr = errorBox();
    const thing = h("input", { name: "thing", placeholder: "optional: the device's name" });
    const enrollment = h("input", { name: "enrollment", placeholder: "optional" });
    const ttl = h("input", { name: "ttl", placeholder: "24h" });
    form = h(
      "form",
      { class: "card", "aria-label": "New claim token" },
      h("h2", {}, "New claim token"),
      ferr.el,
      h("div", { class: "grid" }, field("Thing name", thing), field("Enrollment group", enrollment, "Its settings apply to the thing."), field("Valid for", ttl, "A duration such as 72h; empty: the server's default.")),
      h("button", { type: "submit" }, "Create claim token"),
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      ferr.hide();
      const body: Record<string, string> = {};
      if (thing.value.trim()) body.thing = thing.value.trim();
      if (enrollment.value.trim()) body.enrollment = enrollment.value.trim();
      if (ttl.value.trim()) body.ttl = ttl.value.trim();
      try {
        const c = await post<Claim>("/claims", body);
        showClaim(shown, c);
        load();
      } catch (e) {
        ferr.show(e);
      }
    });
  }
  clear(
    main,
    h("h1", {}, "Claim tokens"),
    h("p", { class: "muted" }, "A one-time token, often as a QR code on the box, with which one device enrolls itself (POST /api/v1/provisioning/claim)."),
    err.el,
    form,
    shown,
    tableWrap(
      h("table", {}, h("thead", {}, h("tr", {}, ...["Claim", "Thing", "Expires", "State", ""].map((c) => h("th", { scope: "col" }, c)))), tbody),
    ),
  );

  async function load(): Promise<void> {
    try {
      const page = await get<List<Claim>>("/claims?limit=1000");
      err.hide();
      const rows = page.items.map((c) => {
        const revoke = h("button", { type: "button", class: "small danger", "aria-label": `Revoke claim ${c.id}` }, "Revoke");
        revoke.addEventListener("click", async () => {
          if (!confirm(`Revoke claim ${c.id}? An unused token stops working.`)) return;
          try {
            await del(`/claims/${enc(c.id)}`);
            load();
          } catch (e) {
            err.show(e);
          }
        });
        const expired = new Date(c.expiresAt).getTime() < Date.now();
        return h(
          "tr",
          { "data-claim": c.id },
          h("td", {}, h("code", {}, c.id), c.enrollment ? h("small", { class: "muted" }, h("br"), c.enrollment) : ""),
          h("td", {}, c.redeemedThing || c.thing || h("span", { class: "muted" }, "the CSR's name")),
          h("td", {}, fmtTime(c.expiresAt)),
          h(
            "td",
            { "data-testid": "claim-state" },
            c.redeemed ? `redeemed ${fmtTime(c.redeemedAt)}` : expired ? h("span", { class: "badge off" }, "expired") : h("span", { class: "badge on" }, "open"),
          ),
          h("td", { class: "actions" }, canChangeFleet() && !c.redeemed ? revoke : null),
        );
      });
      clear(tbody, ...(rows.length ? rows : [h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No claim tokens."))]));
    } catch (e) {
      err.show(e);
    }
  }
  load();
}

// showClaim shows a new token and its QR code once; Print prints the QR
// and its text alone (the print stylesheet hides the rest of the page).
function showClaim(box: HTMLElement, c: Claim): void {
  const token = h("input", { readonly: true, value: c.token ?? "", "data-testid": "claim-token", class: "secret" });
  clear(
    box,
    h(
      "section",
      { class: "card", role: "status", "aria-label": "New claim token" },
      h("p", {}, "The token is shown only this once (the server keeps its hash): print or copy it now."),
      field("Token", token),
      c.qr
        ? h(
            "figure",
            { class: "print-qr", "data-testid": "claim-qr" },
            h("img", { src: c.qr.png, alt: `QR code of claim token for ${c.thing || "a device"}`, width: 256, height: 256 }),
            h("figcaption", {}, c.thing ? h("strong", {}, c.thing, h("br")) : null, h("code", {}, c.qr.payload)),
          )
        : null,
      h("div", {}, h("button", { type: "button", onclick: () => window.print() }, "Print"), " ", h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Done")),
    ),
  );
}
