import "./style.css";
import { api, get, Me, onConnectionChange, setUnauthorizedHandler } from "./api";
import { clear, errorBox, field, h } from "./ui";
import { overviewPage } from "./overview";
import { thingsPage } from "./things";
import { thingPage } from "./thing";
import { rulesPage } from "./rules";
import { jobPage, jobsPage } from "./jobs";
import { alarmsPage } from "./alarms";
import { mapPage } from "./map";
import { dashboardPage, dashboardsPage } from "./dashboards";
import { tokensPage, usersPage } from "./users";
import { profilesPage } from "./profiles";
import { auditPage } from "./audit";
import { groupsPage } from "./groups";
import { typesPage } from "./types";
import { policiesPage } from "./policies";
import { claimsPage, enrollmentsPage } from "./enrollments";

// A page renders into main and returns a cleanup (closes event streams).
export type Page = (main: HTMLElement, params: Record<string, string>, me?: Me) => (() => void) | void;

const routes: { pattern: RegExp; keys: string[]; page: Page; nav: string; title: string }[] = [
  { pattern: /^\/$/, keys: [], page: overviewPage, nav: "/", title: "Overview" },
  { pattern: /^\/things$/, keys: [], page: thingsPage, nav: "/things", title: "Things" },
  { pattern: /^\/things\/([^/]+)$/, keys: ["name"], page: thingPage, nav: "/things", title: "Thing" },
  { pattern: /^\/rules$/, keys: [], page: rulesPage, nav: "/rules", title: "Rules" },
  { pattern: /^\/profiles$/, keys: [], page: profilesPage, nav: "/profiles", title: "Profiles" },
  { pattern: /^\/jobs$/, keys: [], page: jobsPage, nav: "/jobs", title: "Jobs" },
  { pattern: /^\/jobs\/([^/]+)$/, keys: ["name"], page: jobPage, nav: "/jobs", title: "Job" },
  { pattern: /^\/alarms$/, keys: [], page: alarmsPage, nav: "/alarms", title: "Alarms" },
  { pattern: /^\/map$/, keys: [], page: mapPage, nav: "/map", title: "Map" },
  { pattern: /^\/dashboards$/, keys: [], page: dashboardsPage, nav: "/dashboards", title: "Dashboards" },
  { pattern: /^\/dashboards\/([^/]+)$/, keys: ["name"], page: dashboardPage, nav: "/dashboards", title: "Dashboard" },
  { pattern: /^\/users$/, keys: [], page: usersPage, nav: "/users", title: "Users" },
  { pattern: /^\/tokens$/, keys: [], page: tokensPage, nav: "/tokens", title: "API tokens" },
  { pattern: /^\/audit$/, keys: [], page: auditPage, nav: "/audit", title: "Audit log" },
  { pattern: /^\/groups$/, keys: [], page: groupsPage, nav: "/groups", title: "Groups" },
  { pattern: /^\/types$/, keys: [], page: typesPage, nav: "/types", title: "Types" },
  { pattern: /^\/policies$/, keys: [], page: policiesPage, nav: "/policies", title: "Policies" },
  { pattern: /^\/enrollments$/, keys: [], page: enrollmentsPage, nav: "/enrollments", title: "Enrollment groups" },
  { pattern: /^\/claims$/, keys: [], page: claimsPage, nav: "/claims", title: "Claim tokens" },
];

const app = document.getElementById("app")!;

// A notice while the server cannot be reached (the live streams are
// retried; the page reloads its data once they are back).
const connLost = h(
  "div",
  { class: "conn-lost", role: "status", "data-testid": "connection-lost", hidden: true },
  "Connection to the server lost. Reconnecting… What this page shows may be out of date.",
);
let lostTimer: number | undefined;
onConnectionChange((lost) => {
  window.clearTimeout(lostTimer);
  // A blip (a stream reopened at once) shows nothing.
  if (lost) lostTimer = window.setTimeout(() => (connLost.hidden = false), 1000);
  else connLost.hidden = true;
});
let me: Me | null = null;
// canOperate: whether the signed-in user may change things (an operator
// or admin); pages hide buttons a viewer could not use.
export function canOperate(): boolean {
  return !!me && me.role !== "viewer";
}
// scoped: whether the signed-in user (or token) is scoped to groups; it
// is then refused the fleet-wide pages, which are not offered.
export function scoped(): boolean {
  return !!me && Array.isArray(me.groups);
}
// canChangeFleet: whether the user may change fleet-wide things (types,
// groups, policies, enrollments): an operator or admin not scoped to groups.
export function canChangeFleet(): boolean {
  return canOperate() && !scoped();
}
let cleanup: (() => void) | void;

export function navigate(path: string): void {
  if (path !== location.pathname + location.search) history.pushState(null, "", path);
  render();
}

// Links inside the app navigate without reloading.
document.addEventListener("click", (ev) => {
  const a = (ev.target as Element).closest?.("a");
  if (!a || a.target || a.hasAttribute("download") || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
  const href = a.getAttribute("href");
  if (!href || !href.startsWith("/") || href.startsWith("/api/") || href.startsWith("/metrics")) return;
  ev.preventDefault();
  navigate(href);
});
window.addEventListener("popstate", () => render());

// A session that ends (expired, signed out elsewhere) shows the sign-in
// page; while signed out there is nothing to do.
setUnauthorizedHandler(() => {
  if (!me) return;
  me = null;
  render();
});

async function render(): Promise<void> {
  if (cleanup) cleanup();
  cleanup = undefined;
  if (!me) {
    try {
      const m = await get<Me>("/auth/me");
      me = m.via === "none" ? null : m;
    } catch {
      me = null;
    }
  }
  if (!me) {
    loginPage();
    return;
  }
  const path = location.pathname;
  let match: RegExpMatchArray | null = null;
  const route = routes.find((r) => (match = path.match(r.pattern)));
  const main = h("main", { id: "main", tabindex: "-1" });
  const nav = h(
    "nav",
    { "aria-label": "Main" },
    h("a", { href: "/", class: "brand" }, "Mote"),
    h(
      "ul",
      {},
      ...[
        ["/", "Overview"],
        ["/things", "Things"],
        ["/groups", "Groups"],
        ["/types", "Types"],
        ...(scoped() ? [] : [["/policies", "Policies"], ["/enrollments", "Enrollments"], ["/claims", "Claims"]]), // fleet-wide: refused to a scoped user
        ["/rules", "Rules"],
        ["/jobs", "Jobs"],
        ["/profiles", "Profiles"],
        ["/alarms", "Alarms"],
        ["/map", "Map"],
        ["/dashboards", "Dashboards"],
        ...(me.role === "admin" ? [["/users", "Users"]] : []),
        ["/tokens", "Tokens"],
        ...(me.role === "admin" ? [["/audit", "Audit"]] : []), // only admins may read it
      ]
        .filter(([href]) => !scoped() || !["/rules", "/profiles", "/map"].includes(href)) // fleet-wide: refused to a scoped user
        .map(([href, label]) =>
        h("li", {}, h("a", { href, "aria-current": route?.nav === href ? "page" : undefined }, label)),
      ),
    ),
    h(
      "div",
      { class: "who" },
      h("span", {}, `${me.user} (${me.role})`),
      h("button", { type: "button", class: "link", onclick: logout }, "Sign out"),
    ),
  );
  clear(app, h("a", { href: "#main", class: "skip" }, "Skip to content"), h("header", {}, nav), connLost, main);
  if (!route) {
    document.title = "Not found · Mote";
    clear(main, h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "/" }, "Back to the overview")));
    return;
  }
  const params: Record<string, string> = {};
  route.keys.forEach((k, i) => (params[k] = decodeURIComponent((match as RegExpMatchArray)[i + 1])));
  document.title = `${params.name ?? route.title} · Mote`;
  cleanup = route.page(main, params, me);
}

async function logout(): Promise<void> {
  try {
    await api("POST", "/auth/logout");
  } finally {
    me = null;
    history.pushState(null, "", "/");
    render();
  }
}

function loginPage(): void {
  document.title = "Sign in · Mote";
  const err = errorBox();
  const user = h("input", { name: "user", autocomplete: "username", required: true, value: "admin" });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    { class: "login card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Sign in to Mote"),
    err.el,
    field("User name", user),
    field("Password", pass, "First start? The password of user admin was printed by `mote serve`; `mote admin password` sets a new one."),
    button,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hide();
    button.disabled = true;
    try {
      me = await api<Me>("POST", "/auth/login", { user: user.value, password: pass.value });
      render();
    } catch (e) {
      err.show(e);
      pass.focus();
    } finally {
      button.disabled = false;
    }
  });
  clear(app, h("main", { class: "center" }, form));
  (user.value ? pass : user).focus();
  // Single sign-on, when the server offers it: a navigation to the
  // provider (GET /auth/oidc, docs/users.md).
  get<{ enabled: boolean; label?: string; loginUrl?: string }>("/auth/oidc")
    .then((sso) => {
      if (!sso.enabled || !sso.loginUrl) return;
      form.append(h("p", { class: "sso" }, h("a", { href: sso.loginUrl, class: "button", "data-testid": "sso" }, sso.label || "Sign in with SSO")));
    })
    .catch(() => {});
}

render();
