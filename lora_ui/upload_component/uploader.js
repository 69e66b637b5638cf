// Dataset file picker and direct uploader (st.components.v2).
//
// Python -> JS (`data`): { max_bytes, job: null | { id, url, method, headers, file: { name, size } } }
// JS -> Python: state "file" = { name, size, type, picked } for the chosen file (null when none);
//               trigger "result" = { job, ok, status, error, cancelled } once the PUT of `job` has ended.
//
// The File object never leaves the browser except as the body of the PUT to the upload URL, so a 500 MB file
// never passes through the Streamlit session. Streamlit calls this function again whenever `data` changes,
// with the same DOM (the chosen file stays selected), so per-instance state lives in a WeakMap keyed by it.

const instances = new WeakMap();

// Headers the browser sets itself and refuses from scripts.
const FORBIDDEN_HEADERS = new Set(["content-length", "host", "connection", "accept-encoding", "expect"]);

function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "";
  const units = ["B", "KiB", "MiB", "GiB"]; // binary units, as the pages name them
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

// A short reason from a storage error body: our API's JSON ({message} / {detail}) or S3's XML (<Message>).
function reasonFrom(xhr) {
  const text = (xhr.responseText || "").slice(0, 2000);
  try {
    const body = JSON.parse(text);
    const reason = body.message || body.detail || body.error;
    if (typeof reason === "string") return reason;
    if (reason && typeof reason.message === "string") return reason.message;
  } catch (_) {
    const match = text.match(/<Message>([^<]{1,300})<\/Message>/);
    if (match) return match[1];
  }
  return "";
}

function describeFailure(xhr) {
  const reason = reasonFrom(xhr);
  const detail = reason ? ` (${reason})` : "";
  switch (xhr.status) {
    case 413:
      return `The storage server refused the file as too large (HTTP 413)${detail}.`;
    case 401:
    case 403:
      return `The upload link was refused (HTTP ${xhr.status}): it has probably expired${detail}. Start the upload again.`;
    case 400:
      return `The storage server rejected the upload (HTTP 400)${detail}.`;
    default:
      if (xhr.status >= 500) return `The storage server failed (HTTP ${xhr.status})${detail}. Try again in a moment.`;
      return `The upload failed (HTTP ${xhr.status})${detail}.`;
  }
}

function setup(parentElement, setStateValue) {
  const root = parentElement.querySelector(".uploader");
  const self = {
    root,
    drop: root.querySelector(".drop"),
    input: root.querySelector(".file-input"),
    chosen: root.querySelector(".chosen"),
    name: root.querySelector(".file-name"),
    size: root.querySelector(".file-size"),
    progress: root.querySelector(".progress"),
    fill: root.querySelector(".fill"),
    progressText: root.querySelector(".progress-text"),
    cancel: root.querySelector(".cancel"),
    message: root.querySelector(".message"),
    maxBytes: null,
    startedJobs: new Set(),
    xhr: null,
    unmounted: false,
    picks: 0,
  };

  const showMessage = (text) => {
    self.message.textContent = text || "";
    self.message.hidden = !text;
  };
  self.showMessage = showMessage;

  const choose = (file) => {
    if (self.xhr) return; // never swap the file under a running upload
    showMessage("");
    self.progress.hidden = true;
    if (!file) {
      self.chosen.hidden = true;
      setStateValue("file", null);
      return;
    }
    self.name.textContent = file.name; // textContent: a file name is never markup
    self.size.textContent = formatBytes(file.size);
    self.chosen.hidden = false;
    if (self.maxBytes && file.size > self.maxBytes) {
      showMessage(
        `This file is ${formatBytes(file.size)}; the limit is ${formatBytes(self.maxBytes)}. ` +
          "Compress it with gzip (.jsonl.gz) or split it into smaller files.",
      );
    } else if (file.size === 0) {
      showMessage("This file is empty (0 bytes): choose the file that holds your examples.");
    }
    self.picks += 1;
    setStateValue("file", { name: file.name, size: file.size, type: file.type || "", picked: self.picks });
  };

  self.input.addEventListener("change", () => choose(self.input.files && self.input.files[0]));
  self.drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    self.drop.classList.add("dragging");
  });
  self.drop.addEventListener("dragleave", () => self.drop.classList.remove("dragging"));
  self.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    self.drop.classList.remove("dragging");
    if (self.xhr || !event.dataTransfer || !event.dataTransfer.files.length) return;
    self.input.files = event.dataTransfer.files;
    choose(self.input.files[0]);
  });
  self.cancel.addEventListener("click", () => {
    if (self.xhr) self.xhr.abort();
  });
  return self;
}

function setBusy(self, busy) {
  self.input.disabled = busy;
  self.drop.classList.toggle("disabled", busy);
  self.cancel.hidden = !busy;
}

function warnOnLeave(event) {
  event.preventDefault();
  event.returnValue = "";
}

// The upload in progress, for the guard below (one upload runs at a time on a page).
let running = null;

// A click on a link to another page of the app (the sidebar's menu, "All datasets"…) unmounts this component,
// which stops the upload: ask first, as the browser's own prompt does for a reload or a closed tab. Captured on
// the window, before the app's own handlers see the click; cancelling keeps the user here and the upload going.
function confirmLeave(event) {
  if (!running || event.defaultPrevented || event.button !== 0) return;
  if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return; // a new tab or window: nothing stops
  const link = event.target instanceof Element ? event.target.closest("a[href]") : null;
  if (!link || link.target === "_blank" || link.hasAttribute("download")) return;
  const url = new URL(link.href, window.location.href);
  // Another site, or this very page (its own menu entry, a link within it): the upload is not interrupted.
  if (url.origin !== window.location.origin || url.pathname === window.location.pathname) return;
  const { name, fraction } = running;
  const question =
    `“${name}” is still uploading (${Math.floor(fraction * 100)}% sent). ` +
    "Leaving this page stops the upload. Leave anyway?";
  if (!window.confirm(question)) {
    event.preventDefault();
    event.stopImmediatePropagation();
  }
}

function startUpload(self, job, setTriggerValue) {
  const file = self.input.files && self.input.files[0];
  const report = (outcome) => {
    if (!self.unmounted) setTriggerValue("result", { job: job.id, ...outcome });
  };
  if (!file || file.name !== job.file.name || file.size !== job.file.size) {
    report({ ok: false, status: 0, error: "The chosen file is no longer selected here; choose it again." });
    return;
  }

  const xhr = new XMLHttpRequest();
  self.xhr = xhr;
  const started = performance.now();
  self.progress.hidden = false;
  self.progress.classList.remove("failed", "done");
  self.fill.style.width = "0%";
  self.progressText.textContent = `Uploading… 0% of ${formatBytes(file.size)}`;
  self.showMessage("");
  setBusy(self, true);
  window.addEventListener("beforeunload", warnOnLeave);
  running = { name: file.name, fraction: 0 };
  window.addEventListener("click", confirmLeave, true);

  const finish = (outcome) => {
    self.xhr = null;
    setBusy(self, false);
    window.removeEventListener("beforeunload", warnOnLeave);
    window.removeEventListener("click", confirmLeave, true);
    running = null;
    if (outcome.ok) {
      self.progress.classList.add("done");
      self.fill.style.width = "100%";
      self.progressText.textContent = `Uploaded ${formatBytes(file.size)} — checking…`;
    } else {
      // The page says why, next to the form (Python knows whether anything was kept); here only the bar turns red.
      self.progress.classList.add("failed");
      self.fill.style.width = "100%";
      self.progressText.textContent = outcome.cancelled ? "Upload cancelled." : "Upload failed.";
    }
    report(outcome);
  };

  xhr.open(job.method || "PUT", job.url);
  for (const [name, value] of Object.entries(job.headers || {})) {
    if (!FORBIDDEN_HEADERS.has(name.toLowerCase())) xhr.setRequestHeader(name, value);
  }
  xhr.upload.onprogress = (event) => {
    const total = event.lengthComputable ? event.total : file.size;
    const fraction = total ? Math.min(1, event.loaded / total) : 0;
    const seconds = (performance.now() - started) / 1000;
    const rate = seconds > 0.5 ? ` · ${formatBytes(event.loaded / seconds)}/s` : "";
    if (running) running.fraction = fraction;
    self.fill.style.width = `${(fraction * 100).toFixed(1)}%`;
    self.progressText.textContent =
      `Uploading… ${Math.floor(fraction * 100)}% · ${formatBytes(event.loaded)} of ${formatBytes(total)}${rate}`;
  };
  xhr.onload = () => {
    if (xhr.status >= 200 && xhr.status < 300) finish({ ok: true, status: xhr.status, error: null });
    else finish({ ok: false, status: xhr.status, error: describeFailure(xhr) });
  };
  xhr.onerror = () =>
    finish({
      ok: false,
      status: 0,
      error:
        "Network error: the connection to the storage server failed or was refused " +
        "(offline, server down, or the storage does not allow uploads from this site).",
    });
  xhr.ontimeout = () => finish({ ok: false, status: 0, error: "The upload timed out." });
  xhr.onabort = () => finish({ ok: false, status: 0, cancelled: true, error: "Upload cancelled." });
  xhr.send(file);
}

export default function (component) {
  const { parentElement, data, setStateValue, setTriggerValue } = component;
  let self = instances.get(parentElement);
  if (!self) {
    self = setup(parentElement, setStateValue);
    instances.set(parentElement, self);
  }
  self.unmounted = false;
  self.maxBytes = (data && data.max_bytes) || null;

  const job = data && data.job;
  if (job && job.id && !self.startedJobs.has(job.id) && !self.xhr) {
    self.startedJobs.add(job.id);
    startUpload(self, job, setTriggerValue);
  }
  setBusy(self, Boolean(self.xhr) || Boolean(data && data.disabled));

  // Called when the component leaves the page (the user navigates away): an upload still running is abandoned,
  // and its dataset stays "uploading", which the detail page reports as an unfinished upload.
  // Streamlit also calls a superseded call's cleanup when `data` changed while it was loading, with the DOM still
  // in place; so abort only when the DOM is really gone (checked after React has finished the commit).
  return () => {
    setTimeout(() => {
      if (self.root.isConnected) return;
      self.unmounted = true;
      if (self.xhr) self.xhr.abort();
    }, 0);
  };
}
