import { ApiError, del, enc, get, List, post } from "./api";
import { clear, errorBox, field, fmtTime, h, plural, pretty, tableWrap } from "./ui";
import { canChangeFleet, canOperate } from "./main";

// Jobs (docs/jobs.md): the list with progress per execution status, a
// job's page with its executions and cancel, the create form with a live
// preview of the things a query matches, and artifact uploads for OTA
// documents (docs/artifacts.md). Everything from the REST API.

export interface Job {
  jobId: string;
  description?: string;
  status: string;
  targetSelection: string;
  targets: { things?: string[]; groups?: string[]; query?: string };
  document?: unknown;
  documentSource?: string;
  rollout?: { maximumPerMinute?: number };
  abort?: { criteria: { failureType: string; thresholdPercentage: number; minNumberOfExecutedThings: number }[] };
  timeouts?: { inProgressMinutes?: number };
  reasonCode?: string;
  comment?: string;
  released: number;
  createdAt: string;
  updatedAt: string;
  completedAt?: string;
  counts?: Record<string, number>;
}

export interface Execution {
  jobId: string;
  thingName: string;
  status: string;
  statusDetails?: Record<string, string>;
  queuedAt?: string;
  startedAt?: string;
  lastUpdatedAt: string;
  versionNumber: number;
  executionNumber: number;
  retries: number;
}

interface Artifact {
  name: string;
  version: string;
  contentType: string;
  size: number;
  sha256: string;
  signed: boolean;
  createdAt: string;
}

// The execution statuses in the order the progress bar shows them, with
// their words and colour class.
const statuses: [string, string][] = [
  ["SUCCEEDED", "succeeded"],
  ["FAILED", "failed"],
  ["REJECTED", "rejected"],
  ["TIMED_OUT", "timed out"],
  ["CANCELED", "canceled"],
  ["REMOVED", "removed"],
  ["IN_PROGRESS", "in progress"],
  ["QUEUED", "queued"],
  ["SCHEDULED", "scheduled"],
];
const statusWord = (s: string) => statuses.find(([k]) => k === s)?.[1] ?? s.toLowerCase();

// jobStatus is a job's status in words; a job canceled by its abort
// criteria says "aborted".
function jobStatus(j: Job): HTMLElement {
  const aborted = j.status === "CANCELED" && j.reasonCode === "ABORTED";
  const word = aborted ? "aborted" : j.status === "IN_PROGRESS" ? "in progress" : j.status.toLowerCase();
  const cls = j.status === "COMPLETED" ? "badge on" : j.status === "CANCELED" ? "badge warn" : "badge off";
  return h("span", { class: cls, "data-testid": "job-status" }, word);
}

// progress is a bar with one segment per execution status and the
// counts in words (the bar's accessible name says the same).
export function progress(counts: Record<string, number> = {}): HTMLElement {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const parts = statuses.filter(([k]) => counts[k]).map(([k, w]) => `${counts[k]} ${w}`);
  const label = total ? `${parts.join(", ")} of ${plural(total, "execution")}` : "no executions";
  return h(
    "div",
    { class: "job-progress", "data-testid": "job-progress" },
    h(
      "div",
      { class: "bar", role: "img", "aria-label": label },
      ...statuses
        .filter(([k]) => counts[k])
        .map(([k, w]) => h("span", { class: "seg s-" + k.toLowerCase(), style: `width:${(100 * counts[k]) / total}%`, title: `${counts[k]} ${w}` })),
    ),
    h("small", { class: "counts", "aria-hidden": "true" }, label),
  );
}

function targetsText(t: Job["targets"]): string {
  const out: string[] = [];
  if (t.groups?.length) out.push("groups " + t.groups.join(", "));
  if (t.things?.length) out.push(t.things.length <= 3 ? "things " + t.things.join(", ") : plural(t.things.length, "thing"));
  if (t.query) out.push("query " + t.query);
  return out.join("; ");
}

// The jobs list: refreshed every 2 seconds while shown.
export function jobsPage(main: HTMLElement): () => void {
  const err = errorBox();
  const tbody = h("tbody");
  const pager = h("div", { class: "pager" });
  const formBox = h("div");
  const uploadBox = h("div");
  const cursors: string[] = [""];
  let page = 0;
  const pageSize = 25;
  let stopped = false;
  let timer: number | undefined;

  const load = async () => {
    window.clearTimeout(timer);
    try {
      const list = await get<List<Job>>(`/jobs?limit=${pageSize}${cursors[page] ? "&cursor=" + enc(cursors[page]) : ""}`);
      err.hide();
      if (list.nextCursor) cursors[page + 1] = list.nextCursor;
      else cursors.length = page + 1;
      clear(
        tbody,
        list.items.length === 0
          ? h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No jobs yet."))
          : list.items.map((j) =>
              h(
                "tr",
                { "data-job": j.jobId },
                h("td", {}, h("a", { href: `/jobs/${enc(j.jobId)}` }, j.jobId), j.description ? h("div", { class: "muted" }, j.description) : null),
                h("td", {}, jobStatus(j)),
                h("td", { class: "progress-cell" }, progress(j.counts)),
                h("td", { class: "attrs" }, targetsText(j.targets)),
                h("td", {}, fmtTime(j.createdAt)),
              ),
            ),
      );
      clear(
        pager,
        h("button", { type: "button", disabled: page === 0, onclick: () => { page--; load(); } }, "← Previous"),
        h("span", {}, ` Page ${page + 1} `),
        h("button", { type: "button", disabled: !list.nextCursor, onclick: () => { page++; load(); } }, "Next →"),
      );
    } catch (e) {
      err.show(e);
    }
    if (!stopped) timer = window.setTimeout(load, 2000);
  };

  const params = new URLSearchParams(location.search);
  clear(
    main,
    h(
      "div",
      { class: "title" },
      h("h1", {}, "Jobs"),
      canOperate()
        ? h(
            "div",
            {},
            canChangeFleet() ? [h("button", { type: "button", onclick: () => uploadForm(uploadBox) }, "Upload artifact"), " "] : null, // artifacts are fleet-wide
            h("button", { type: "button", onclick: () => jobForm(formBox, {}, load) }, "New job"),
          )
        : null,
    ),
    uploadBox,
    formBox,
    err.el,
    tableWrap(
      h(
        "table",
        { class: "jobs" },
        h("thead", {}, h("tr", {}, ...["Job", "Status", "Progress", "Targets", "Created"].map((c) => h("th", { scope: "col" }, c)))),
        tbody,
      ),
    ),
    pager,
  );
  // /jobs?new=1&things=a,b (from the Things page) opens the form prefilled.
  if (params.get("new")) {
    jobForm(formBox, { things: params.get("things") ?? "", query: params.get("q") ?? "", groups: params.get("groups") ?? "" }, load);
    history.replaceState(null, "", "/jobs");
  }
  load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}

// uploadForm streams a file to POST /artifacts (the body is the file).
function uploadForm(box: HTMLElement): void {
  const err = errorBox();
  const file = h("input", { type: "file", name: "artifact-file", required: true });
  const name = h("input", { name: "artifact-name", required: true, pattern: "[A-Za-z0-9_.\\-]+", autocomplete: "off" });
  const version = h("input", { name: "artifact-version", required: true, pattern: "[A-Za-z0-9._+\\-]+", autocomplete: "off" });
  const submit = h("button", { type: "submit" }, "Upload");
  const out = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    { class: "card", "aria-label": "Upload artifact" },
    h("h2", {}, "Upload artifact"),
    err.el,
    h("div", { class: "grid" }, field("File", file), field("Name", name, "e.g. thermo-fw"), field("Version", version, "e.g. 1.4.0")),
    h("div", {}, submit, " ", h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close")),
    out,
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hide();
    const f = file.files?.[0];
    if (!f) return;
    submit.disabled = true;
    try {
      const res = await fetch(`/api/v1/artifacts?name=${enc(name.value.trim())}&version=${enc(version.value.trim())}`, {
        method: "POST",
        headers: { "X-Mote-Console": "1", Accept: "application/json", "Content-Type": f.type || "application/octet-stream" },
        credentials: "same-origin",
        body: f,
      });
      const data = await res.json().catch(() => undefined);
      if (!res.ok) throw new ApiError(res.status, data?.detail || data?.title || `${res.status} ${res.statusText}`, data?.field);
      const a = data as Artifact;
      clear(out, h("p", { class: "ok", "data-testid": "upload-result" }, `Uploaded ${a.name} ${a.version}: ${a.size} bytes, sha256 ${a.sha256.slice(0, 16)}…`));
    } catch (e) {
      err.show(e);
    } finally {
      submit.disabled = false;
    }
  });
  clear(box, form);
}

// otaDocument is the OTA document for an artifact version: placeholders
// the server replaces per execution, and the version devices report.
function otaDocument(a: Artifact): unknown {
  const ref = `${a.name}:${a.version}`;
  return {
    operation: "ota",
    artifact: a.name,
    version: a.version,
    url: `\${mote:artifact:${ref}}`,
    sha256: `\${mote:artifact:${ref}:sha256}`,
    size: `\${mote:artifact:${ref}:size}`,
  };
}

const list = (s: string) => s.split(",").map((x) => x.trim()).filter(Boolean);

// jobForm: create a job. The query preview counts the things a query
// matches (debounced GET /things:count?q=) or shows its error with
// line:column.
function jobForm(box: HTMLElement, prefill: { things?: string; groups?: string; query?: string }, reload: () => void): void {
  const err = errorBox();
  const jobId = h("input", { name: "jobId", required: true, pattern: "[A-Za-z0-9_\\-]{1,64}", autocomplete: "off" });
  const description = h("input", { name: "description" });
  const query = h("textarea", { name: "target-query", rows: 2, spellcheck: "false", placeholder: "e.g. type = 'sensor' AND attributes.site = 'ams'" });
  query.value = prefill.query ?? "";
  const preview = h("div", { class: "muted", "data-testid": "query-preview", "aria-live": "polite" });
  const groupList = h("datalist", { id: "job-groups" });
  const groups = h("input", { name: "target-groups", list: "job-groups", placeholder: "amsterdam, lab", value: prefill.groups ?? "" });
  const groupsPreview = h("div", { class: "muted", "data-testid": "groups-preview", "aria-live": "polite" });
  const things = h("input", { name: "target-things", placeholder: "lamp-1, lamp-2", value: prefill.things ?? "" });
  const selection = h("select", { name: "targetSelection" }, h("option", { value: "snapshot" }, "snapshot (the things selected now)"), h("option", { value: "continuous" }, "continuous (also things that join a group later)"));
  const artifact = h("select", { name: "artifact" }, h("option", { value: "" }, "none: write the document"));
  const doc = h("textarea", { name: "document", rows: 7, spellcheck: "false" });
  doc.value = pretty({ operation: "reboot" });
  const rate = h("input", { name: "maximumPerMinute", type: "number", min: 1, max: 1000, placeholder: "all at once" });
  const abortType = h("select", { name: "abort-failureType" }, ...["FAILED", "REJECTED", "TIMED_OUT", "ALL"].map((v) => h("option", { value: v }, v)));
  const abortPct = h("input", { name: "abort-thresholdPercentage", type: "number", min: 0.01, max: 100, step: "any", placeholder: "no abort" });
  const abortMin = h("input", { name: "abort-minNumberOfExecutedThings", type: "number", min: 1, value: 1 });
  const timeout = h("input", { name: "inProgressMinutes", type: "number", min: 1, max: 10080, placeholder: "none" });
  const retryType = h("select", { name: "retry-failureType" }, ...["FAILED", "TIMED_OUT", "ALL"].map((v) => h("option", { value: v }, v)));
  const retries = h("input", { name: "retry-numberOfRetries", type: "number", min: 0, max: 10, placeholder: "0" });
  const submit = h("button", { type: "submit" }, "Create job");

  // The live preview.
  let seq = 0;
  let debounce: number | undefined;
  const updatePreview = () => {
    window.clearTimeout(debounce);
    const q = query.value.trim();
    if (!q) {
      preview.className = "muted";
      preview.textContent = "";
      return;
    }
    debounce = window.setTimeout(async () => {
      const mine = ++seq;
      try {
        const c = await get<{ count: number }>(`/things:count?q=${enc(q)}`);
        if (mine !== seq) return;
        preview.className = "ok";
        preview.textContent = `${plural(c.count, "thing")} match`;
      } catch (e) {
        if (mine !== seq) return;
        preview.className = "error query-error";
        preview.textContent = e instanceof Error ? e.message : String(e);
      }
    }, 300);
  };
  query.addEventListener("input", updatePreview);
  updatePreview();
  // The groups' member counts (GET /groups/{name}/things' total).
  let gseq = 0;
  let gdebounce: number | undefined;
  const updateGroups = () => {
    window.clearTimeout(gdebounce);
    const names = list(groups.value);
    if (names.length === 0) {
      groupsPreview.textContent = "";
      return;
    }
    gdebounce = window.setTimeout(async () => {
      const mine = ++gseq;
      const parts = await Promise.all(
        names.map((g) =>
          get<List<unknown>>(`/groups/${enc(g)}/things?limit=1`)
            .then((l) => `${g}: ${plural(l.total ?? 0, "thing")}`)
            .catch((e) => `${g}: ${e instanceof Error ? e.message : e}`),
        ),
      );
      if (mine === gseq) groupsPreview.textContent = parts.join("; ");
    }, 300);
  };
  groups.addEventListener("input", updateGroups);
  updateGroups();

  let artifacts: Artifact[] = [];
  artifact.addEventListener("change", () => {
    const a = artifacts.find((x) => `${x.name}:${x.version}` === artifact.value);
    if (a) doc.value = pretty(otaDocument(a));
  });
  (async () => {
    try {
      const [al, gl] = await Promise.all([
        get<List<Artifact>>("/artifacts?limit=100").catch(() => ({ items: [] as Artifact[] })),
        get<List<{ name: string; dynamic: boolean }>>("/groups?limit=100").catch(() => ({ items: [] as { name: string; dynamic: boolean }[] })),
      ]);
      artifacts = al.items;
      artifact.append(...artifacts.map((a) => h("option", { value: `${a.name}:${a.version}` }, `${a.name} ${a.version} (${a.size} bytes)`)));
      groupList.append(...gl.items.map((g) => h("option", { value: g.name }, g.dynamic ? "dynamic" : "static")));
    } catch {
      /* the pickers stay empty */
    }
  })();

  const form = h(
    "form",
    { class: "card job-form", "aria-label": "New job" },
    h("h2", {}, "New job"),
    err.el,
    h("div", { class: "grid" }, field("Job id", jobId, "letters, digits, - and _"), field("Description", description)),
    h("fieldset", {}, h("legend", {}, "Targets"),
      field("Query", query, "a fleet query; the things it matches now"),
      preview,
      h("div", { class: "grid" }, h("div", {}, field("Groups", groups, "static or dynamic, comma-separated"), groupsPreview), field("Things", things, "names, comma-separated")),
      field("Target selection", selection),
    ),
    h("fieldset", {}, h("legend", {}, "Document"), field("Artifact", artifact, "an OTA document for this artifact version"), field("Job document (JSON)", doc)),
    h("fieldset", {}, h("legend", {}, "Rollout"),
      h("div", { class: "grid" },
        field("Maximum per minute", rate),
        field("Timeout in progress (minutes)", timeout),
        field("Abort on", abortType),
        field("Abort threshold (%)", abortPct),
        field("Abort after (executed things)", abortMin),
        field("Retry on", retryType),
        field("Retries", retries),
      ),
    ),
    h("div", {}, submit, " ", h("button", { type: "button", class: "link", onclick: () => clear(box) }, "Close")),
  );
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    err.hide();
    let document: unknown;
    try {
      document = JSON.parse(doc.value);
    } catch (e) {
      err.show(new Error(`The job document is not JSON: ${e instanceof Error ? e.message : e}`));
      doc.focus();
      return;
    }
    const body: any = { jobId: jobId.value.trim(), targets: {}, document, targetSelection: selection.value };
    if (description.value.trim()) body.description = description.value.trim();
    if (query.value.trim()) body.targets.query = query.value.trim();
    if (list(groups.value).length) body.targets.groups = list(groups.value);
    if (list(things.value).length) body.targets.things = list(things.value);
    if (rate.value) body.rollout = { maximumPerMinute: Number(rate.value) };
    if (abortPct.value) body.abort = { criteria: [{ failureType: abortType.value, action: "CANCEL", thresholdPercentage: Number(abortPct.value), minNumberOfExecutedThings: Number(abortMin.value) || 1 }] };
    if (timeout.value) body.timeouts = { inProgressMinutes: Number(timeout.value) };
    if (retries.value && Number(retries.value) > 0) body.retry = { criteria: [{ failureType: retryType.value, numberOfRetries: Number(retries.value) }] };
    submit.disabled = true;
    try {
      const j = await post<Job>("/jobs", body);
      clear(box, h("p", { class: "ok", "data-testid": "job-created" }, "Job ", h("a", { href: `/jobs/${enc(j.jobId)}` }, j.jobId), ` created (${plural(Object.values(j.counts ?? {}).reduce((a, b) => a + b, 0), "execution")}).`));
      reload();
    } catch (e) {
      err.show(e);
    } finally {
      submit.disabled = false;
    }
  });
  clear(box, groupList, form);
  jobId.focus();
}

// A job's page: summary, progress, document, cancel and delete, and its
// executions in pages of 25; refreshed every 2 seconds.
export function jobPage(main: HTMLElement, params: Record<string, string>): () => void {
  const id = params.name;
  const path = `/jobs/${enc(id)}`;
  const err = errorBox();
  const summary = h("div", { class: "card", "data-testid": "job-summary" }, "…");
  const tbody = h("tbody", { "data-testid": "executions" });
  const pager = h("div", { class: "pager" });
  const cursors: string[] = [""];
  let page = 0;
  const pageSize = 25;
  const force = h("input", { type: "checkbox", name: "force" });
  const cancel = h("button", { type: "button", class: "danger" }, "Cancel job");
  const remove = h("button", { type: "button", class: "danger" }, "Delete job");
  let stopped = false;
  let timer: number | undefined;
  let job: Job | undefined;

  const load = async () => {
    window.clearTimeout(timer);
    try {
      const [j, ex] = await Promise.all([
        get<Job>(path),
        get<List<Execution>>(`${path}/executions?limit=${pageSize}${cursors[page] ? "&cursor=" + enc(cursors[page]) : ""}`),
      ]);
      job = j;
      err.hide();
      cancel.disabled = j.status !== "IN_PROGRESS";
      clear(
        summary,
        h("dl", { class: "props" },
          h("dt", {}, "Status"), h("dd", {}, jobStatus(j), j.reasonCode ? ` ${j.reasonCode}` : "", j.comment ? ` — ${j.comment}` : ""),
          h("dt", {}, "Progress"), h("dd", {}, progress(j.counts), h("small", {}, ` ${j.released} released`)),
          h("dt", {}, "Targets"), h("dd", {}, `${targetsText(j.targets)} (${j.targetSelection})`),
          j.description ? [h("dt", {}, "Description"), h("dd", {}, j.description)] : null,
          h("dt", {}, "Rollout"), h("dd", {}, j.rollout?.maximumPerMinute ? `at most ${j.rollout.maximumPerMinute} per minute` : "all at once"),
          j.abort ? [h("dt", {}, "Abort"), h("dd", {}, j.abort.criteria.map((c) => `${c.failureType} ≥ ${c.thresholdPercentage}% after ${c.minNumberOfExecutedThings}`).join("; "))] : null,
          j.timeouts?.inProgressMinutes ? [h("dt", {}, "Timeout"), h("dd", {}, `${j.timeouts.inProgressMinutes} min in progress`)] : null,
          h("dt", {}, "Created"), h("dd", {}, fmtTime(j.createdAt)),
          j.completedAt ? [h("dt", {}, "Ended"), h("dd", {}, fmtTime(j.completedAt))] : null,
        ),
        h("details", {}, h("summary", {}, "Document"), h("pre", { "data-testid": "job-document" }, pretty(j.document ?? j.documentSource))),
      );
      if (ex.nextCursor) cursors[page + 1] = ex.nextCursor;
      else cursors.length = page + 1;
      clear(
        tbody,
        ex.items.length === 0
          ? h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No executions."))
          : ex.items.map((x) =>
              h(
                "tr",
                { "data-thing": x.thingName },
                h("td", {}, h("a", { href: `/things/${enc(x.thingName)}` }, x.thingName)),
                h("td", { "data-testid": "execution-status" }, h("span", { class: "status s-" + x.status.toLowerCase() }, statusWord(x.status))),
                h("td", { class: "attrs" }, Object.entries(x.statusDetails ?? {}).map(([k, v]) => `${k}: ${v}`).join(", ")),
                h("td", {}, `#${x.executionNumber}${x.retries ? `, ${plural(x.retries, "retry", "retries")}` : ""}`),
                h("td", {}, fmtTime(x.lastUpdatedAt)),
              ),
            ),
      );
      clear(
        pager,
        h("button", { type: "button", disabled: page === 0, onclick: () => { page--; load(); } }, "← Previous"),
        h("span", {}, ` Page ${page + 1} `),
        h("button", { type: "button", disabled: !ex.nextCursor, onclick: () => { page++; load(); } }, "Next →"),
      );
    } catch (e) {
      err.show(e);
      if (e instanceof ApiError && e.status === 404) {
        stopped = true;
        clear(summary, h("p", {}, h("a", { href: "/jobs" }, "Back to the jobs")));
        return;
      }
    }
    if (!stopped) timer = window.setTimeout(load, 2000);
  };

  cancel.addEventListener("click", async () => {
    const msg = force.checked
      ? `Cancel job ${id}? Executions in progress are canceled too (force).`
      : `Cancel job ${id}? Executions not started are canceled; those in progress may still finish.`;
    if (!confirm(msg)) return;
    try {
      await post(`${path}/cancel`, { force: force.checked });
      load();
    } catch (e) {
      err.show(e);
    }
  });
  remove.addEventListener("click", async () => {
    const inProgress = job?.status === "IN_PROGRESS";
    if (!confirm(`Delete job ${id} and its executions?${inProgress ? " It is in progress: it is deleted with force." : ""}`)) return;
    try {
      await del(`${path}${inProgress ? "?force=true" : ""}`);
      stopped = true;
      history.pushState(null, "", "/jobs");
      window.dispatchEvent(new PopStateEvent("popstate"));
    } catch (e) {
      err.show(e);
    }
  });

  clear(
    main,
    h("p", {}, h("a", { href: "/jobs" }, "← Jobs")),
    h("div", { class: "title" }, h("h1", {}, "Job ", id), canOperate() ? h("div", { class: "job-actions" }, h("label", { class: "check" }, force, " force (also in progress)"), " ", cancel, " ", remove) : null),
    err.el,
    summary,
    h("h2", {}, "Executions"),
    tableWrap(h("table", {}, h("thead", {}, h("tr", {}, ...["Thing", "Status", "Details", "Execution", "Updated"].map((c) => h("th", { scope: "col" }, c)))), tbody)),
    pager,
  );
  load();
  return () => {
    stopped = true;
    window.clearTimeout(timer);
  };
}
