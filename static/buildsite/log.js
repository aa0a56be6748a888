/* Buildsite log viewer: a build's log over a websocket, from a cursor, with ANSI colours,
   line numbers that link to the line, a timestamps toggle and a follow-tail that pauses
   while the reader has scrolled up. After a drop it reconnects with the last cursor it
   received, and the server resumes right after it. */
(function () {
  "use strict";

  /* ANSI: SGR sequences become classes (16 colours) or inline colours (256 and 24-bit);
     every other escape sequence is dropped. Text only ever goes into text nodes. */
  const ESCAPES = /\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()#][0-9A-Za-z]|\x1b[@-Z\\-_]/g;
  const CUBE = [0, 95, 135, 175, 215, 255];

  function color256(n) {
    if (n < 16) return { cls: n };
    if (n >= 232) { const v = 8 + (n - 232) * 10; return { rgb: "rgb(" + v + "," + v + "," + v + ")" }; }
    n -= 16;
    return { rgb: "rgb(" + CUBE[Math.floor(n / 36)] + "," + CUBE[Math.floor(n / 6) % 6] + "," + CUBE[n % 6] + ")" };
  }

  function applySgr(style, params) {
    const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => parseInt(p || "0", 10));
    for (let i = 0; i < codes.length; i++) {
      const c = codes[i];
      if (c === 0) { for (const k of Object.keys(style)) delete style[k]; }
      else if (c === 1) style.b = true;
      else if (c === 2) style.d = true;
      else if (c === 3) style.i = true;
      else if (c === 4) style.u = true;
      else if (c === 7) style.inv = true;
      else if (c === 9) style.s = true;
      else if (c === 22) { delete style.b; delete style.d; }
      else if (c === 23) delete style.i;
      else if (c === 24) delete style.u;
      else if (c === 27) delete style.inv;
      else if (c === 29) delete style.s;
      else if (c >= 30 && c <= 37) style.fg = { cls: c - 30 };
      else if (c >= 90 && c <= 97) style.fg = { cls: c - 90 + 8 };
      else if (c >= 40 && c <= 47) style.bg = { cls: c - 40 };
      else if (c >= 100 && c <= 107) style.bg = { cls: c - 100 + 8 };
      else if (c === 39) delete style.fg;
      else if (c === 49) delete style.bg;
      else if (c === 38 || c === 48) {
        let value = null;
        if (codes[i + 1] === 5) { value = color256(codes[i + 2] || 0); i += 2; }
        else if (codes[i + 1] === 2) { value = { rgb: "rgb(" + (codes[i + 2] || 0) + "," + (codes[i + 3] || 0) + "," + (codes[i + 4] || 0) + ")" }; i += 4; }
        if (value) style[c === 38 ? "fg" : "bg"] = value;
      }
    }
  }

  function styledSpan(text, style) {
    const span = document.createElement("span");
    span.textContent = text;
    const fg = style.inv ? style.bg || { cls: 0 } : style.fg;
    const bg = style.inv ? style.fg || { cls: 7 } : style.bg;
    const classes = ["b", "d", "i", "u", "s"].filter((k) => style[k]).map((k) => "a-" + k);
    if (fg) { if (fg.rgb) span.style.color = fg.rgb; else classes.push("f" + fg.cls); }
    if (bg) { if (bg.rgb) span.style.backgroundColor = bg.rgb; else classes.push("b" + bg.cls); }
    if (classes.length) span.className = classes.join(" ");
    return span;
  }

  function ansiToNodes(text, target) {
    // A carriage return rewrites the line in a terminal (progress bars): keep the last write.
    const cr = text.replace(/\r+$/, "").lastIndexOf("\r");
    if (cr >= 0) text = text.slice(cr + 1);
    if (text.indexOf("\x1b") < 0) { target.textContent = text; return; }
    const style = {};
    let last = 0;
    ESCAPES.lastIndex = 0;
    let match;
    while ((match = ESCAPES.exec(text)) !== null) {
      if (match.index > last) target.appendChild(styledSpan(text.slice(last, match.index), style));
      if (match[2] === "m") applySgr(style, match[1]);
      last = ESCAPES.lastIndex;
    }
    if (last < text.length) target.appendChild(styledSpan(text.slice(last), style));
  }

  function pad(n, width) { return String(n).padStart(width, "0"); }
  function clock(epoch) {
    const d = new Date(epoch * 1000);
    return pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" + pad(d.getSeconds(), 2) + "." + pad(d.getMilliseconds(), 3);
  }

  class LogViewer {
    constructor(root, onStatus) {
      this.root = root;
      this.onStatus = onStatus || function () {};
      this.body = root.querySelector("[data-log-body]");
      this.lines = root.querySelector("[data-log-lines]");
      this.empty = root.querySelector("[data-log-empty]");
      this.state = root.querySelector("[data-live-state]");
      this.followButton = root.querySelector("[data-log-follow]");
      this.cursor = "";
      this.lastSeq = 0;
      this.following = true;
      // Where following last put the view: a scrollTop above it is the reader's doing.
      this.stuckAt = 0;
      this.finished = false;
      this.target = this.targetFromHash();
      // Counters a reader never sees; tests assert they stay zero.
      root.dataset.dropped = "0";
      root.dataset.gaps = "0";
      root.dataset.connections = "0";
      this.setupOptions();
      this.body.addEventListener("scroll", () => this.onScroll());
      this.followButton.addEventListener("click", () => this.follow());
      window.addEventListener("hashchange", () => { this.target = this.targetFromHash(); this.showTarget(); });
      this.live = new Buildsite.LiveSocket(
        () => root.dataset.logSocket + (this.cursor ? "?cursor=" + encodeURIComponent(this.cursor) : ""),
        (message) => this.onMessage(message),
        (state) => this.setState(state),
      );
    }

    get socket() { return this.live.socket; }

    setupOptions() {
      this.root.querySelectorAll("[data-log-option]").forEach((input) => {
        const key = "buildsite.log." + input.dataset.logOption;
        const stored = localStorage.getItem(key);
        if (stored !== null) input.checked = stored === "1";
        const apply = () => {
          this.root.classList.toggle(input.dataset.logOption === "timestamps" ? "show-ts" : "wrap", input.checked);
          localStorage.setItem(key, input.checked ? "1" : "0");
        };
        input.addEventListener("change", apply);
        apply();
      });
    }

    setState(state) {
      if (state === "live") this.root.dataset.connections = String(Number(this.root.dataset.connections) + 1);
      if (this.finished && state === "live") state = "finished";
      this.state.dataset.state = state;
      this.state.textContent = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…", finished: "Finished" }[state];
    }

    onMessage(message) {
      if (message.type === "logs") {
        this.append(message.lines);
        this.cursor = message.cursor;
      } else if (message.type === "status") {
        this.finished = message.build.status === "stopped";
        if (this.finished && this.state.dataset.state === "live") this.setState("finished");
        this.onStatus(message.build);
        document.dispatchEvent(new CustomEvent("buildsite:status", { detail: message.build }));
      }
    }

    append(lines) {
      // A reader's scroll up moves the view before its scroll event is dispatched; a
      // batch arriving in between must see it, not pull the view back down.
      if (this.following && this.body.scrollTop < this.stuckAt) this.onScroll();
      const stick = this.following;
      const fragment = document.createDocumentFragment();
      for (const line of lines) {
        if (line.seq <= this.lastSeq) { this.root.dataset.dropped = String(Number(this.root.dataset.dropped) + 1); continue; }
        if (line.seq !== this.lastSeq + 1) this.root.dataset.gaps = String(Number(this.root.dataset.gaps) + 1);
        this.lastSeq = line.seq;
        fragment.appendChild(this.render(line));
      }
      this.lines.appendChild(fragment);
      this.root.dataset.lastSeq = String(this.lastSeq);
      this.empty.hidden = this.lastSeq > 0;
      if (this.target && !this.target.shown) this.showTarget();
      else if (stick) this.toBottom();
    }

    render(line) {
      const row = document.createElement("div");
      row.className = "ln ln-" + line.stream;
      row.id = "L" + line.seq;
      const number = document.createElement("a");
      number.className = "ln-no";
      number.href = "#L" + line.seq;
      number.textContent = line.seq;
      const ts = document.createElement("span");
      ts.className = "ln-ts";
      ts.textContent = clock(line.ts);
      ts.title = new Date(line.ts * 1000).toISOString();
      const text = document.createElement("span");
      text.className = "ln-text";
      ansiToNodes(line.text, text);
      row.append(number, ts, text);
      return row;
    }

    targetFromHash() {
      const match = /^#L(\d+)$/.exec(location.hash);
      return match ? { seq: Number(match[1]), shown: false } : null;
    }

    showTarget() {
      if (!this.target) return;
      const row = document.getElementById("L" + this.target.seq);
      if (!row) return;
      this.lines.querySelectorAll(".ln.target").forEach((el) => el.classList.remove("target"));
      row.classList.add("target");
      this.target.shown = true;
      this.following = false;
      this.followButton.hidden = false;
      this.body.scrollTop = row.offsetTop - this.body.clientHeight / 3;
    }

    onScroll() {
      // While the log fits in the box every position is "the bottom"; only a reader
      // scrolling through a log taller than the box changes whether it follows.
      if (this.body.scrollHeight <= this.body.clientHeight + 8) return;
      const atBottom = this.body.scrollHeight - this.body.scrollTop - this.body.clientHeight < 8;
      this.following = atBottom;
      this.followButton.hidden = atBottom;
    }

    follow() {
      this.following = true;
      this.followButton.hidden = true;
      this.toBottom();
    }

    toBottom() {
      this.body.scrollTop = this.body.scrollHeight;
      this.stuckAt = this.body.scrollTop;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    const root = document.querySelector("[data-log-socket]");
    if (!root) return;
    let lastStatus = null;
    window.buildsiteLog = new LogViewer(root, (build) => {
      // The summary (status, phases, buttons allowed by role) is rendered by the server.
      const summary = document.getElementById("build-summary");
      const key = build.status + "/" + build.build_outcome + "/" + JSON.stringify(build.phases || []);
      const rendered = summary && summary.dataset.status + "/" + summary.dataset.outcome;
      const changed = lastStatus === null ? rendered !== build.status + "/" + (build.build_outcome || "") : key !== lastStatus;
      if (summary && changed) Buildsite.refresh(summary, summary.dataset.summaryUrl);
      lastStatus = key;
    });
  });

  window.BuildsiteLog = { LogViewer, ansiToNodes };
})();
