// The fleet map (docs/map.md): every thing with a position
// (GET /fleet/positions, then the event stream's "position" events),
// clustered, coloured by its active alarms, and the geofences of the
// geofence analytics rules, drawn and edited with Leaflet-Geoman.
//
// Leaflet's plugins extend the global L that Leaflet's UMD build sets, so
// Leaflet is imported before them.
import L from "leaflet";
import "leaflet/dist/leaflet.css";
import "leaflet.markercluster";
import "leaflet.markercluster/dist/MarkerCluster.css";
import "leaflet.markercluster/dist/MarkerCluster.Default.css";
import "@geoman-io/leaflet-geoman-free";
import "@geoman-io/leaflet-geoman-free/dist/leaflet-geoman.css";
import { ApiError, del, enc, events, get, List, post, put, Stream } from "./api";
import { clear, errorBox, field, h, plural, tableWrap } from "./ui";
import { canOperate, navigate } from "./main";
import { severities } from "./alarms";

export interface Position {
  thing: string;
  lat: number;
  lon: number;
  lastSeen?: string;
  alarm?: string; // worst active severity
}

interface PositionList {
  items: Position[];
  nextCursor?: string;
  total: number;
}

export interface AnalyticsRule {
  name: string;
  kind: string;
  thingType?: string;
  group?: string;
  config: any;
  enabled: boolean;
}

// state maps the worst active severity to the marker colour.
export function alarmState(sev?: string): "red" | "orange" | "green" {
  if (sev === "critical" || sev === "major") return "red";
  if (sev === "minor" || sev === "warning") return "orange";
  return "green";
}

const stateRank = { red: 2, orange: 1, green: 0 };

let tileURL: Promise<string> | undefined;
// tiles reads the tile URL setting once (GET /server).
function tiles(): Promise<string> {
  if (!tileURL) tileURL = get<{ mapTileURL?: string }>("/server").then((s) => s.mapTileURL ?? "").catch(() => "");
  return tileURL;
}

const pinIcons = new Map<string, L.DivIcon>();
function pin(state: string): L.DivIcon {
  let i = pinIcons.get(state);
  if (!i) {
    i = L.divIcon({ className: `map-pin ${state}`, iconSize: [14, 14], html: "" });
    pinIcons.set(state, i);
  }
  return i;
}

interface Entry {
  marker: L.Marker;
  pos: Position;
}

export interface FleetMap {
  map: L.Map;
  fences: L.FeatureGroup;
  // reloadFences draws the geofence rules again; onFences hears the list.
  reloadFences: () => Promise<void>;
  fenceLayers: Map<string, L.Layer>;
  onFences?: (rules: AnalyticsRule[]) => void;
  close: () => void;
}

// fleetMap draws the fleet into el (which has a height). With fences it
// also shows the geofence rules.
export function fleetMap(el: HTMLElement, opts: { fences: boolean; status?: HTMLElement }): FleetMap {
  // maxZoom: clustering needs one, with or without tiles.
  const map = L.map(el, { worldCopyJump: true, zoomControl: true, maxZoom: 19 }).setView([20, 0], 2);
  const entries = new Map<string, Entry>();
  // For the browser tests: the map, and where a thing's marker is.
  (el as any).leafletMap = map;
  (el as any).marker = (thing: string) => {
    const e = entries.get(thing);
    return e ? [e.marker.getLatLng().lat, e.marker.getLatLng().lng, (e.marker.options as any).state] : null;
  };
  el.setAttribute("role", "region");
  if (!el.getAttribute("aria-label")) el.setAttribute("aria-label", "Fleet map");
  tiles().then((url) => {
    if (!url) {
      el.classList.add("no-tiles");
      return;
    }
    L.tileLayer(url, {
      maxZoom: 19,
      attribution: url.includes("openstreetmap.org") ? '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors' : "",
    }).addTo(map);
  });

  const cluster = L.markerClusterGroup({
    chunkedLoading: true,
    showCoverageOnHover: false,
    // A cluster takes the colour of its worst thing.
    iconCreateFunction: (c) => {
      let worst: "red" | "orange" | "green" = "green";
      for (const m of c.getAllChildMarkers()) {
        const s = ((m.options as any).state ?? "green") as "red" | "orange" | "green";
        if (stateRank[s] > stateRank[worst]) worst = s;
      }
      const n = c.getChildCount();
      return L.divIcon({
        html: `<div><span>${n}</span></div>`,
        className: `marker-cluster map-cluster ${worst}`,
        iconSize: L.point(40, 40),
      });
    },
  });
  map.addLayer(cluster);
  const fences = L.featureGroup().addTo(map);
  const fenceLayers = new Map<string, L.Layer>();
  let userMoved = false;
  let fitted = false;
  map.on("dragstart zoomstart", () => {
    if (fitted) userMoved = true;
  });

  const newMarker = (p: Position): L.Marker => {
    const state = alarmState(p.alarm);
    const m = L.marker([p.lat, p.lon], { icon: pin(state), title: p.thing, keyboard: true, state } as L.MarkerOptions);
    m.on("click", () => navigate(`/things/${enc(p.thing)}`));
    m.bindTooltip(p.thing, { direction: "top", offset: [0, -8] });
    return m;
  };
  const setAlarm = (e: Entry, sev?: string) => {
    e.pos.alarm = sev;
    const state = alarmState(sev);
    if ((e.marker.options as any).state === state) return;
    (e.marker.options as any).state = state;
    e.marker.setIcon(pin(state));
    cluster.refreshClusters(e.marker);
  };

  const fit = () => {
    if (userMoved) return;
    const b = L.latLngBounds([]);
    for (const e of entries.values()) b.extend(e.marker.getLatLng());
    if (fences.getLayers().length) b.extend(fences.getBounds());
    if (b.isValid()) {
      map.fitBounds(b, { padding: [30, 30], maxZoom: 14, animate: false });
      fitted = true;
    }
  };

  let closed = false;
  const say = (s: string) => {
    if (opts.status) opts.status.textContent = s;
  };
  async function loadPositions(): Promise<void> {
    const all: Position[] = [];
    let cursor = "";
    try {
      for (let i = 0; i < 100; i++) {
        const page = await get<PositionList>(`/fleet/positions?limit=10000${cursor ? "&cursor=" + enc(cursor) : ""}`);
        all.push(...page.items);
        if (!page.nextCursor) break;
        cursor = page.nextCursor;
      }
    } catch (e) {
      say(e instanceof Error ? e.message : String(e));
      if (e instanceof ApiError && e.status === 503 && !closed) window.setTimeout(loadPositions, 2000);
      return;
    }
    if (closed) return;
    const seen = new Set<string>();
    const add: L.Marker[] = [];
    const moved: Entry[] = [];
    for (const p of all) {
      seen.add(p.thing);
      const e = entries.get(p.thing);
      if (!e) {
        const m = newMarker(p);
        entries.set(p.thing, { marker: m, pos: p });
        add.push(m);
      } else {
        setAlarm(e, p.alarm);
        const ll = e.marker.getLatLng();
        if (ll.lat !== p.lat || ll.lng !== p.lon) moved.push(e), (e.pos = p);
      }
    }
    const gone: L.Marker[] = [];
    for (const [name, e] of entries) if (!seen.has(name)) gone.push(e.marker), entries.delete(name);
    cluster.removeLayers(gone);
    move(moved);
    cluster.addLayers(add);
    el.dataset.markers = String(entries.size);
    say(entries.size ? `${plural(entries.size, "thing")} with a position.` : "No thing has reported a position yet (telemetry with numeric lat and lon).");
    fit();
  }
  const move = (list: Entry[]) => {
    if (!list.length) return;
    const ms = list.map((e) => e.marker);
    cluster.removeLayers(ms);
    for (const e of list) e.marker.setLatLng([e.pos.lat, e.pos.lon]);
    cluster.addLayers(ms);
  };

  // Live positions are applied in batches (twice a second at most).
  const pending = new Map<string, { lat: number; lon: number }>();
  let flushTimer: number | undefined;
  const flush = () => {
    flushTimer = undefined;
    const moved: Entry[] = [];
    const added: L.Marker[] = [];
    for (const [thing, p] of pending) {
      const e = entries.get(thing);
      if (e) {
        e.pos = { ...e.pos, lat: p.lat, lon: p.lon };
        moved.push(e);
      } else {
        const pos: Position = { thing, lat: p.lat, lon: p.lon };
        const m = newMarker(pos);
        entries.set(thing, { marker: m, pos });
        added.push(m);
        refreshAlarm(thing);
      }
    }
    pending.clear();
    move(moved);
    cluster.addLayers(added);
    el.dataset.markers = String(entries.size);
    if (added.length && !fitted) fit();
  };
  const refreshAlarm = async (thing: string) => {
    try {
      const list = await get<List<{ severity: string }>>(`/alarms?status=active&thing=${enc(thing)}&limit=1000`);
      const e = entries.get(thing);
      if (!e) return;
      let worst: string | undefined;
      for (const a of list.items) if (worst === undefined || severities.indexOf(a.severity) < severities.indexOf(worst)) worst = a.severity;
      setAlarm(e, worst);
    } catch {
      /* shown on the next reload */
    }
  };
  let reloadTimer: number | undefined;
  const es: Stream = events(
    "positions=1&alarms=1",
    {
      position: (p: { thing: string; lat: number; lon: number }) => {
        pending.set(p.thing, p);
        if (flushTimer === undefined) flushTimer = window.setTimeout(flush, 500);
      },
      alarm: (e: { alarm: { thing: string } }) => {
        if (entries.has(e.alarm.thing)) refreshAlarm(e.alarm.thing);
      },
      // Positions were lost: read them all again, at most every 5 s.
      dropped: () => {
        if (reloadTimer === undefined) reloadTimer = window.setTimeout(() => ((reloadTimer = undefined), loadPositions()), 5000);
      },
    },
    () => loadPositions(),
  );
  loadPositions();

  const fm: FleetMap = {
    map,
    fences,
    fenceLayers,
    reloadFences: async () => {},
    close() {
      closed = true;
      es.close();
      window.clearTimeout(flushTimer);
      window.clearTimeout(reloadTimer);
      map.remove();
    },
  };
  if (opts.fences) {
    fm.reloadFences = async () => {
      const rules: AnalyticsRule[] = [];
      let cursor = "";
      try {
        for (let i = 0; i < 100; i++) {
          const page = await get<List<AnalyticsRule>>(`/analytics/rules?limit=1000${cursor ? "&cursor=" + enc(cursor) : ""}`);
          rules.push(...page.items.filter((r) => r.kind === "geofence"));
          if (!page.nextCursor) break;
          cursor = page.nextCursor;
        }
      } catch (e) {
        if (!(e instanceof ApiError && e.status === 503)) say(e instanceof Error ? e.message : String(e));
        return;
      }
      if (closed) return;
      fences.clearLayers();
      fenceLayers.clear();
      for (const r of rules) {
        const layer = fenceLayer(r);
        if (!layer) continue;
        (layer as any).ruleName = r.name;
        layer.bindTooltip(`${r.name} (alarm on ${r.config.alarmOn ?? "exit"})`, { sticky: true });
        fences.addLayer(layer);
        fenceLayers.set(r.name, layer);
      }
      el.dataset.fences = String(fenceLayers.size);
      fm.onFences?.(rules);
      fit();
    };
    fm.reloadFences();
  }
  return fm;
}

const fenceStyle = (r: AnalyticsRule): L.PathOptions => ({
  color: r.enabled ? "#2a6cd6" : "#8a94a3",
  weight: 2,
  dashArray: r.enabled ? undefined : "6 4",
  fillOpacity: 0.08,
  className: "geofence",
});

// fenceLayer draws a rule's fence: a GeoJSON Polygon or MultiPolygon
// ([lon, lat]) or a {"type": "Circle", "center": [lon, lat], "radiusMeters"}.
function fenceLayer(r: AnalyticsRule): L.Path | null {
  const f = r.config?.fence;
  if (!f) return null;
  if (f.type === "Circle" && Array.isArray(f.center)) {
    return L.circle([f.center[1], f.center[0]], { ...fenceStyle(r), radius: f.radiusMeters });
  }
  if (f.type === "Polygon" || f.type === "MultiPolygon") {
    const layers = L.geoJSON(f, { style: () => fenceStyle(r) }).getLayers();
    return (layers[0] as L.Path) ?? null;
  }
  return null;
}

const round = (v: number) => Math.round(v * 1e7) / 1e7;

// fenceOf turns a drawn or edited layer back into a rule's fence.
function fenceOf(layer: L.Layer): any {
  if (layer instanceof L.Circle) {
    const c = layer.getLatLng();
    return { type: "Circle", center: [round(c.lng), round(c.lat)], radiusMeters: Math.max(1, Math.round(layer.getRadius())) };
  }
  const g = (layer as L.Polygon).toGeoJSON().geometry as any;
  const ring = (r: number[][]) => r.map(([x, y]) => [round(x), round(y)]);
  if (g.type === "Polygon") return { type: "Polygon", coordinates: g.coordinates.map(ring) };
  if (g.type === "MultiPolygon") return { type: "MultiPolygon", coordinates: g.coordinates.map((p: number[][][]) => p.map(ring)) };
  throw new Error(`a ${g.type} cannot be a geofence`);
}

// The Map page: the map, and (for operators) geofences to draw, edit and
// delete, each saved as a geofence analytics rule.
export function mapPage(main: HTMLElement): () => void {
  const err = errorBox();
  const status = h("p", { class: "muted", role: "status", "data-testid": "map-status" });
  const mapEl = h("div", { class: "fleet-map big", "data-testid": "fleet-map", "aria-label": "Fleet map" });
  const fenceRows = h("tbody", { "data-testid": "geofences" });
  const formBox = h("div", {});
  const tools = h("div", { class: "map-tools" });
  clear(
    main,
    h("div", { class: "title" }, h("h1", {}, "Map"), h("span", { class: "legend" },
      h("span", { class: "map-pin red", "aria-hidden": "true" }), " critical or major alarm ",
      h("span", { class: "map-pin orange", "aria-hidden": "true" }), " minor or warning ",
      h("span", { class: "map-pin green", "aria-hidden": "true" }), " no active alarm")),
    err.el,
    status,
    mapEl,
    h(
      "section",
      { class: "card", "aria-labelledby": "fences-h" },
      h("div", { class: "title" }, h("h2", { id: "fences-h" }, "Geofences"), tools),
      formBox,
      tableWrap(h("table", { "aria-label": "Geofences" }, h("thead", {}, h("tr", {}, ...["Rule", "Shape", "Alarm on", "Applies to", "Severity", ""].map((c) => h("th", { scope: "col" }, c)))), fenceRows)),
    ),
  );
  const fm = fleetMap(mapEl, { fences: true, status });
  const map = fm.map;
  const operator = canOperate();
  let editing: string | null = null;

  // --- drawing a new fence ---
  let drawn: L.Layer | null = null;
  const cancelDraw = () => {
    map.pm.disableDraw();
    if (drawn) map.removeLayer(drawn);
    drawn = null;
    clear(formBox);
  };
  if (operator) {
    const drawPoly = h("button", { type: "button", "data-testid": "draw-polygon" }, "Draw polygon");
    const drawCircle = h("button", { type: "button", "data-testid": "draw-circle" }, "Draw circle");
    drawPoly.addEventListener("click", () => {
      cancelDraw();
      map.pm.enableDraw("Polygon", { allowSelfIntersection: false, finishOn: null } as any);
      status.textContent = "Click the corners of the fence; click the first corner again to close it.";
    });
    drawCircle.addEventListener("click", () => {
      cancelDraw();
      map.pm.enableDraw("Circle", {} as any);
      status.textContent = "Click the centre, then click again at the radius.";
    });
    clear(tools, drawPoly, " ", drawCircle);
  }
  map.on("pm:create", (e: any) => {
    drawn = e.layer as L.Layer;
    (drawn as any).options.className = "geofence draft";
    showSaveForm(drawn);
  });

  function showSaveForm(layer: L.Layer): void {
    const ferr = errorBox();
    const name = h("input", { name: "fence-name", required: true, placeholder: "e.g. depot-ams" });
    const alarmOn = h("select", { name: "alarm-on" }, ...["exit", "enter", "dwell"].map((v) => h("option", { value: v }, v)));
    const dwell = h("input", { name: "dwell", placeholder: "e.g. 10m", value: "10m" });
    const severity = h("select", { name: "severity" }, ...severities.map((s) => h("option", { value: s }, s)));
    severity.value = "major";
    const thingType = h("input", { name: "thing-type", placeholder: "every thing" });
    const group = h("input", { name: "group", placeholder: "every thing" });
    const save = h("button", { type: "submit" }, "Save geofence");
    const cancel = h("button", { type: "button", class: "link" }, "Cancel");
    cancel.addEventListener("click", cancelDraw);
    const form = h(
      "form",
      { class: "inline-form", "aria-label": "New geofence" },
      ferr.el,
      h("div", { class: "grid" }, field("Rule name", name), field("Alarm on", alarmOn), field("Dwell (for dwell)", dwell), field("Severity", severity), field("Thing type", thingType, "optional"), field("Group", group, "optional")),
      save,
      " ",
      cancel,
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      ferr.hide();
      const config: any = { fence: fenceOf(layer), alarmOn: alarmOn.value, severity: severity.value };
      if (alarmOn.value === "dwell") config.dwell = dwell.value.trim();
      const body: any = { name: name.value.trim(), kind: "geofence", config };
      if (thingType.value.trim()) body.thingType = thingType.value.trim();
      if (group.value.trim()) body.group = group.value.trim();
      save.disabled = true;
      try {
        await post("/analytics/rules", body);
        cancelDraw();
        status.textContent = `Geofence ${body.name} saved.`;
        await fm.reloadFences();
      } catch (e) {
        ferr.show(e);
      } finally {
        save.disabled = false;
      }
    });
    clear(formBox, form);
    name.focus();
  }

  // --- the list: edit the shape, delete ---
  fm.onFences = (rules) => {
    clear(
      fenceRows,
      ...rules.map((r) => {
        const shape = r.config.fence?.type === "Circle" ? `circle, ${Math.round(r.config.fence.radiusMeters)} m` : (r.config.fence?.type ?? "?").toLowerCase();
        const actions: HTMLElement[] = [];
        if (operator) {
          const edit = h("button", { type: "button", class: "small", "aria-label": `Edit the shape of ${r.name}` }, editing === r.name ? "Save shape" : "Edit shape");
          edit.addEventListener("click", () => editShape(r, edit));
          const remove = h("button", { type: "button", class: "small danger", "aria-label": `Delete geofence ${r.name}` }, "Delete");
          remove.addEventListener("click", async () => {
            if (!confirm(`Delete geofence ${r.name}? Its detectors stop.`)) return;
            try {
              await del(`/analytics/rules/${enc(r.name)}`);
              status.textContent = `Geofence ${r.name} deleted.`;
              fm.reloadFences();
            } catch (e) {
              err.show(e);
            }
          });
          actions.push(edit, remove);
        }
        const zoom = h("button", { type: "button", class: "link", "aria-label": `Show ${r.name} on the map` }, r.name);
        zoom.addEventListener("click", () => {
          const l = fm.fenceLayers.get(r.name) as L.Path | undefined;
          if (l && (l as any).getBounds) map.fitBounds((l as any).getBounds(), { padding: [30, 30] });
        });
        return h(
          "tr",
          { "data-rule": r.name },
          h("td", {}, zoom, r.enabled ? "" : h("span", { class: "badge off" }, "disabled")),
          h("td", {}, shape),
          h("td", {}, r.config.alarmOn ?? "exit", r.config.dwell ? ` ${r.config.dwell}` : ""),
          h("td", {}, r.thingType ? `type ${r.thingType}` : r.group ? `group ${r.group}` : "every thing"),
          h("td", {}, r.config.severity ?? "major"),
          h("td", { class: "actions" }, ...actions),
        );
      }),
    );
    if (rules.length === 0) clear(fenceRows, h("tr", {}, h("td", { colspan: 6, class: "muted" }, operator ? "No geofences yet: draw one on the map." : "No geofences.")));
  };

  async function editShape(r: AnalyticsRule, btn: HTMLButtonElement): Promise<void> {
    const layer = fm.fenceLayers.get(r.name) as any;
    if (!layer) return;
    if (editing !== r.name) {
      editing = r.name;
      layer.pm.enable({ allowSelfIntersection: false });
      btn.textContent = "Save shape";
      status.textContent = `Drag the corners of ${r.name}, then Save shape.`;
      return;
    }
    layer.pm.disable();
    editing = null;
    try {
      await put(`/analytics/rules/${enc(r.name)}`, { kind: r.kind, thingType: r.thingType || undefined, group: r.group || undefined, enabled: r.enabled, config: { ...r.config, fence: fenceOf(layer) } });
      status.textContent = `Geofence ${r.name} saved.`;
    } catch (e) {
      err.show(e);
    }
    fm.reloadFences();
  }

  return () => {
    fm.close();
  };
}

// overviewMap is the overview's map card.
export function overviewMap(): { el: HTMLElement; close: () => void } {
  const status = h("p", { class: "muted", role: "status" });
  const mapEl = h("div", { class: "fleet-map", "data-testid": "overview-map", "aria-label": "Fleet map" });
  const el = h("section", { class: "card", "aria-labelledby": "map-h" }, h("div", { class: "title" }, h("h2", { id: "map-h" }, "Fleet map"), h("a", { href: "/map" }, "Open the map")), mapEl, status);
  let fm: FleetMap | null = null;
  // Leaflet measures its container: start once it is in the page.
  const start = window.setTimeout(() => (fm = fleetMap(mapEl, { fences: true, status })), 0);
  return {
    el,
    close() {
      window.clearTimeout(start);
      fm?.close();
    },
  };
}
