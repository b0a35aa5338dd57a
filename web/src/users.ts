import { del, enc, get, List, Me, patch, post } from "./api";
import { clear, errorBox, field, fmtTime, h, tableWrap } from "./ui";

// Users (admin only) and API tokens (everyone's own; an admin's all):
// docs/users.md. Everything here is the REST API.

interface User {
  name: string;
  role: string;
  groups?: string[];
  createdAt: string;
  lastLoginAt?: string;
}

interface Token {
  id: string;
  name: string;
  role: string;
  user?: string;
  groups?: string[];
  rateLimit?: number;
  createdAt: string;
  expiresAt?: string;
  lastUsedAt?: string;
}

const roles = ["viewer", "operator", "admin"];

function roleSelect(name: string, value: string, max?: string): HTMLSelectElement {
  const allowed = max ? roles.slice(0, roles.indexOf(max) + 1) : roles;
  return h("select", { name }, ...allowed.map((r) => h("option", { value: r, selected: r === value }, r)));
}

function groupList(s: string): string[] {
  return s
    .split(",")
    .map((g) => g.trim())
    .filter((g) => g);
}

export function usersPage(main: HTMLElement, _params: Record<string, string>, me?: Me): void {
  if (me?.role !== "admin") {
    // Only admins manage users: nothing here is offered to anyone else.
    clear(main, h("h1", {}, "Users"), h("p", { class: "muted" }, "Only admins manage users. ", h("a", { href: "/tokens" }, "Your API tokens")));
    return;
  }
  const err = errorBox();
  const tbody = h("tbody");
  const editor = h("div");
  async function load(): Promise<void> {
    err.hide();
    try {
      const list = await get<List<User>>("/users?limit=1000");
      clear(
        tbody,
        ...list.items.map((u) => {
          const edit = h("button", { type: "button", class: "small", "aria-label": `Edit ${u.name}`, onclick: () => userForm(editor, load, u) }, "Edit");
          const reset = h("button", { type: "button", class: "small", "aria-label": `Reset the password of ${u.name}`, onclick: () => passwordForm(editor, u) }, "Reset password");
          const remove = h("button", { type: "button", class: "small danger", "aria-label": `Delete ${u.name}` }, "Delete");
          remove.addEventListener("click", async () => {
            if (!confirm(`Delete user ${u.name} with its sessions and API tokens?`)) return;
            try {
              await del(`/users/${enc(u.name)}`);
              load();
            } catch (e) {
              err.show(e);
            }
          });
          return h(
            "tr",
            { "data-user": u.name },
            h("td", {}, u.name),
            h("td", {}, u.role),
            h("td", {}, u.groups?.length ? u.groups.join(", ") : h("span", { class: "muted" }, "every thing")),
            h("td", {}, u.lastLoginAt ? fmtTime(u.lastLoginAt) : "never"),
            h("td", { class: "actions" }, edit, " ", reset, " ", remove),
          );
        }),
      );
    } catch (e) {
      err.show(e);
    }
  }
  clear(
    main,
    h("div", { class: "title" }, h("h1", {}, "Users"), h("button", { type: "button", onclick: () => userForm(editor, load) }, "New user")),
    editor,
    err.el,
    tableWrap(h("table", {}, h("thead", {}, h("tr", {}, ...["Name", "Role", "Groups", "Last sign-in", ""].map((c) => h("th", { scope: "col" }, c)))), tbody)),
  );
  load();
}

function userForm(box: HTMLElement, reload: () => void, u?: User): void {
  const err = errorBox();
  const name = h("input", { name: "name", required: true, value: u?.name ?? "", readonly: !!u, autocomplete: "off" });
  const password = h("input", { name: "password", type: "password", required: !u, autocomplete: "new-password", minlength: 8 });
  const role = roleSelect("role", u?.role ?? "viewer");
  const groups = h("input", { name: "groups", value: u?.groups?.join(", ") ?? "" });
  const save = h("button", { type: "submit" }, u ? "Save user" : "Create user");
  const form = h(
    "form",
    { class: "card", "aria-label": u ? `Edit user ${u.name}` : "New user" },
    h("h2", {}, u ? `Edit user ${u.name}` : "New user"),
    err.el,
    h("div", { class: "grid" }, field("Name", name), u ? "" : field("Password", password, "At least 8 characters."), field("Role", role)),
    field("Groups", groups, "Comma-separated group names: the user sees only their things. Empty: every thing."),
    h("div", {}, save, " ", h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hide();
    try {
      if (u) await patch(`/users/${enc(u.name)}`, { role: role.value, groups: groupList(groups.value) });
      else {
        const g = groupList(groups.value);
        await post("/users", { name: name.value.trim(), password: password.value, role: role.value, ...(g.length ? { groups: g } : {}) });
      }
      clear(box);
      reload();
    } catch (e) {
      err.show(e);
    }
  });
  clear(box, form);
  (u ? role : name).focus();
}

function passwordForm(box: HTMLElement, u: User): void {
  const err = errorBox();
  const password = h("input", { name: "password", type: "password", required: true, autocomplete: "new-password", minlength: 8 });
  const done = h("p", { role: "status" });
  const form = h(
    "form",
    { class: "card", "aria-label": `Reset the password of ${u.name}` },
    h("h2", {}, `Reset the password of ${u.name}`),
    err.el,
    field("New password", password, "The user's sessions end."),
    h("div", {}, h("button", { type: "submit" }, "Set password"), " ", h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close")),
    done,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hide();
    try {
      await post(`/users/${enc(u.name)}/password`, { password: password.value });
      password.value = "";
      done.textContent = `Password of ${u.name} set.`;
    } catch (e) {
      err.show(e);
    }
  });
  clear(box, form);
  password.focus();
}

export function tokensPage(main: HTMLElement, _params: Record<string, string>, me?: Me): void {
  const err = errorBox();
  const tbody = h("tbody");
  const created = h("div", { "aria-live": "polite" });
  async function load(): Promise<void> {
    err.hide();
    try {
      const list = await get<List<Token>>("/tokens?limit=1000");
      clear(
        tbody,
        ...list.items.map((t) => {
          const revoke = h("button", { type: "button", class: "small danger", "aria-label": `Revoke ${t.name}` }, "Revoke");
          revoke.addEventListener("click", async () => {
            if (!confirm(`Revoke token ${t.name}? It stops working at once.`)) return;
            try {
              await del(`/tokens/${enc(t.id)}`);
              load();
            } catch (e) {
              err.show(e);
            }
          });
          return h(
            "tr",
            { "data-token": t.id },
            h("td", {}, t.name, h("small", { class: "muted" }, h("br"), t.id)),
            h("td", {}, t.role),
            h("td", {}, t.user ?? ""),
            h("td", {}, t.groups?.length ? t.groups.join(", ") : ""),
            h("td", {}, t.expiresAt ? fmtTime(t.expiresAt) : "never"),
            h("td", {}, t.lastUsedAt ? fmtTime(t.lastUsedAt) : "never"),
            h("td", { class: "actions" }, revoke),
          );
        }),
      );
    } catch (e) {
      err.show(e);
    }
  }
  const ferr = errorBox();
  const name = h("input", { name: "name", required: true, autocomplete: "off" });
  const role = roleSelect("role", me?.role === "admin" ? "viewer" : (me?.role ?? "viewer"), me?.role);
  const groups = h("input", { name: "groups", value: me?.groups?.join(", ") ?? "" });
  const days = h("input", { name: "expires", type: "number", min: 0, value: "90" });
  const form = h(
    "form",
    { class: "card", "aria-label": "New API token" },
    h("h2", {}, "New API token"),
    ferr.el,
    h("div", { class: "grid" }, field("Name", name), field("Role", role), field("Groups", groups, "Comma-separated; empty: yours."), field("Expires in days", days, "0: never")),
    h("button", { type: "submit" }, "Create token"),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    ferr.hide();
    const body: any = { name: name.value.trim(), role: role.value };
    const g = groupList(groups.value);
    if (g.length) body.groups = g;
    const d = Number(days.value);
    if (d > 0) body.expiresAt = new Date(Date.now() + d * 86400_000).toISOString().replace(/\.\d+Z$/, "Z");
    try {
      const t = await post<Token & { token: string }>("/tokens", body);
      const secret = h("input", { name: "secret", readonly: true, value: t.token, "data-testid": "token-secret" });
      clear(created, h("div", { class: "card", role: "status" }, h("p", {}, `Token ${t.name} created. It is shown only this once: copy it now.`), field("Token", secret)));
      name.value = "";
      load();
      secret.select();
    } catch (e) {
      ferr.show(e);
    }
  });
  clear(
    main,
    h("div", { class: "title" }, h("h1", {}, "API tokens")),
    form,
    created,
    err.el,
    tableWrap(h("table", {}, h("thead", {}, h("tr", {}, ...["Name", "Role", "User", "Groups", "Expires", "Last used", ""].map((c) => h("th", { scope: "col" }, c)))), tbody)),
  );
  load();
}
