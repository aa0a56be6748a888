/* Buildsite live pages: a websocket that reconnects by itself, server-rendered fragments
   fetched again when an event says they changed, ticking durations and relative times,
   and the few small behaviours the forms use (copy, confirm, show/hide). */
(function () {
  "use strict";

  function socketUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  /* Calls onMessage for every JSON message; reconnects after a drop with backoff.
     urlFn is called on every (re)connect so the caller can add its latest cursor. */
  class LiveSocket {
    constructor(urlFn, onMessage, onState) {
      this.urlFn = urlFn;
      this.onMessage = onMessage;
      this.onState = onState || function () {};
      this.delay = 500;
      this.closed = false;
      this.connect();
      window.addEventListener("pagehide", () => this.stop());
    }
    connect() {
      const socket = new WebSocket(socketUrl(this.urlFn()));
      this.socket = socket;
      this.onState("connecting");
      socket.onopen = () => { this.delay = 500; this.onState("live"); };
      socket.onmessage = (event) => this.onMessage(JSON.parse(event.data));
      socket.onclose = () => {
        if (this.closed || socket !== this.socket) return;
        this.onState("reconnecting");
        setTimeout(() => { if (!this.closed) this.connect(); }, this.delay);
        this.delay = Math.min(this.delay * 2, 10000);
      };
    }
    stop() {
      this.closed = true;
      if (this.socket) this.socket.close();
    }
  }

  /* Replace `element` with a fresh rendering from `url`; at most one request in flight
     per element, and one more after it if events kept coming. */
  const pending = new WeakMap();
  function refresh(element, url, onDone) {
    const state = pending.get(element);
    if (state) { state.again = true; return; }
    pending.set(element, { again: false });
    fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then((response) => (response.ok ? response.text() : null))
      .then((html) => {
        const again = pending.get(element).again;
        pending.delete(element);
        if (html === null) return;
        const fresh = replaceWith(element, html);
        if (onDone) onDone(fresh);
        if (again) refresh(fresh, url, onDone);
      })
      .catch(() => pending.delete(element));
  }

  function fromHtml(html, container) {
    const holder = document.createElement(container || "div");
    holder.innerHTML = html.trim();
    return holder.firstElementChild;
  }

  function replaceWith(element, html) {
    const fresh = fromHtml(html, element.tagName === "TR" ? "tbody" : "div");
    if (!fresh) return element;
    element.replaceWith(fresh);
    tick();
    return fresh;
  }

  function formatSeconds(total) {
    total = Math.max(0, Math.floor(total));
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + s + "s";
    return s + "s";
  }

  const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  function ago(date) {
    const seconds = (date - Date.now()) / 1000;
    const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
    for (const [unit, size] of units) {
      if (Math.abs(seconds) >= size) return relative.format(Math.round(seconds / size), unit);
    }
    return Math.abs(seconds) < 10 ? "just now" : relative.format(Math.round(seconds), "second");
  }

  function tick() {
    const now = Date.now();
    document.querySelectorAll("[data-elapsed-since]").forEach((el) => {
      el.textContent = formatSeconds((now - Date.parse(el.dataset.elapsedSince)) / 1000);
    });
    document.querySelectorAll("time[data-relative]").forEach((el) => {
      el.textContent = ago(Date.parse(el.getAttribute("datetime")));
    });
  }

  /* Lists: a build event refreshes the row it concerns; a new build of this worker is
     inserted at the top of the history when the page shows the newest builds. */
  function wireAccountSocket(container) {
    const workerTag = container.dataset.liveWorker;
    new LiveSocket(() => container.dataset.liveAccount, (message) => {
      if (message.type !== "build") return;
      const build = message.build;
      if (workerTag === undefined) {
        const row = container.querySelector('tr[data-worker-tag="' + build.worker_tag + '"]');
        if (row) refresh(row, row.dataset.rowUrl);
        return;
      }
      if (build.worker_tag !== workerTag) return;
      const row = container.querySelector('tr[data-build-uuid="' + build.build_uuid + '"]');
      if (row) { refresh(row, row.dataset.rowUrl); return; }
      const branch = container.dataset.branch;
      if (!container.dataset.liveInserts || (branch && branch !== build.branch)) return;
      const url = container.dataset.rowUrl.replace("00000000-0000-0000-0000-000000000000", build.build_uuid);
      const placeholder = document.createElement("tr");
      placeholder.dataset.buildUuid = build.build_uuid;
      container.prepend(placeholder);
      container.querySelectorAll("tr.empty-row").forEach((el) => el.remove());
      refresh(placeholder, url, (fresh) => fresh.classList.add("flash"));
    });
  }

  function copy(button) {
    const input = button.parentElement.querySelector("input");
    const done = () => { const label = button.textContent; button.textContent = "Copied"; setTimeout(() => { button.textContent = label; }, 1500); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(input.value).then(done);
    } else {
      input.select();
      document.execCommand("copy");
      done();
    }
  }

  document.addEventListener("click", (event) => {
    const copyButton = event.target.closest("[data-copy]");
    if (copyButton) copy(copyButton);
    const toggle = event.target.closest("[data-toggle]");
    if (toggle) {
      const target = document.getElementById(toggle.dataset.toggle);
      target.hidden = !target.hidden;
      if (!target.hidden) { const input = target.querySelector("input:not([type=hidden]), select"); if (input) input.focus(); }
    }
  });
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });
  document.addEventListener("change", (event) => {
    if (event.target.matches("[data-autosubmit]")) event.target.form.submit();
  });

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("[data-live-account]").forEach(wireAccountSocket);
    tick();
    setInterval(tick, 1000);
  });

  window.Buildsite = { LiveSocket, refresh, tick };
})();
