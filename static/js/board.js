/*
 * A project's live board (templates/tickets/_board.html).
 *
 * Subscribes to the project's event stream through window.HAAO.live (static/js/live.js),
 * starting after the last event the server rendered (data-after), and:
 *   ticket.transition          moves the card to its new column (fetches unknown cards)
 *   attempt.started            resets the card's progress row
 *   attempt.check / .tokens    updates the progress row (fixed height: nothing below moves)
 *   attempt.finished           shows the attempt's outcome
 * Events are handled one at a time, in order, so a fetched card never races its own events.
 * Without live.js the page stays a server-rendered snapshot with a Refresh link.
 */
(function () {
  "use strict";

  var board = document.querySelector("[data-board]");
  if (!board) return;

  var statusText = board.querySelector("[data-live-status]");
  var dot = board.querySelector("[data-live-dot]");
  var meta = JSON.parse(document.getElementById("board-states").textContent);
  var TONES = ["neutral", "accent", "info", "success", "warning", "danger"];
  var DOTS = { live: "bg-green-500", reconnecting: "bg-amber-500", connecting: "bg-amber-500",
               closed: "bg-slate-400", refused: "bg-red-500", off: "bg-slate-400" };
  var LABELS = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…",
                 closed: "Not live", refused: "Live updates refused", off: "Snapshot" };

  function setStatus(state) {
    if (statusText) statusText.textContent = LABELS[state] || state;
    if (dot) {
      Object.keys(DOTS).forEach(function (key) { dot.classList.remove(DOTS[key]); });
      dot.classList.add(DOTS[state] || DOTS.off);
    }
    board.setAttribute("data-live", state);
  }

  function setTone(element, tone) {
    TONES.forEach(function (name) { element.classList.remove("badge-" + name); });
    element.classList.add("badge-" + (TONES.indexOf(tone) >= 0 ? tone : "neutral"));
  }

  function cssKey(key) {
    return window.CSS && CSS.escape ? CSS.escape(key) : String(key).replace(/"/g, "");
  }

  function cardOf(key) {
    return board.querySelector('[data-ticket="' + cssKey(key) + '"]');
  }

  function column(slug) {
    return board.querySelector('[data-column="' + cssKey(slug) + '"]');
  }

  function changeCount(col, delta) {
    if (!col) return;
    var total = Math.max(0, (parseInt(col.getAttribute("data-total"), 10) || 0) + delta);
    col.setAttribute("data-total", String(total));
    var badge = col.querySelector("[data-column-count]");
    if (badge) badge.textContent = String(total);
    var empty = col.querySelector("[data-column-empty]");
    var list = col.querySelector("[data-cards]");
    if (empty && list) empty.classList.toggle("hidden", list.children.length > 0);
    if (col.getAttribute("data-column") === "in_progress") {
      var wip = board.querySelector("[data-wip-count]");
      if (wip) wip.textContent = String(total);
    }
  }

  function formatNumber(n) {
    try { return Number(n).toLocaleString(); } catch (e) { return String(n); }
  }

  function renderProgress(row) {
    var checks = row.querySelector("[data-progress-checks]");
    var tokens = row.querySelector("[data-progress-tokens]");
    var bar = row.querySelector("[data-progress-bar]");
    var passed = parseInt(row.getAttribute("data-passed"), 10) || 0;
    var total = parseInt(row.getAttribute("data-total"), 10) || 0;
    if (checks) checks.textContent = passed + "/" + total;
    if (bar) bar.style.width = (total ? Math.round(100 * passed / total) : 0) + "%";
    if (tokens) tokens.textContent = formatNumber(row.getAttribute("data-tokens"));
  }

  function place(card, status) {
    var info = meta.states[status];
    var oldCol = card.closest("[data-column]");
    card.setAttribute("data-status", status);
    var badge = card.querySelector("[data-status-badge]");
    if (badge && info) {
      badge.textContent = info.label;
      setTone(badge, info.tone);
    }
    var row = card.querySelector("[data-progress]");
    if (row) row.classList.toggle("hidden", meta.in_progress.indexOf(status) < 0);
    var target = info && info.column ? column(info.column) : null;
    if (target === oldCol) return;
    if (!target) {
      card.remove();
      changeCount(oldCol, -1);
      return;
    }
    // Newest first, as the server orders a column.
    var list = target.querySelector("[data-cards]");
    list.insertBefore(card, list.firstChild);
    changeCount(oldCol, -1);
    changeCount(target, 1);
  }

  function fetchCard(key) {
    var url = board.getAttribute("data-card-url") + encodeURIComponent(key) + "/";
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : ""; })
      .then(function (html) {
        if (!html || cardOf(key)) return null;
        var holder = document.createElement("ul");
        holder.innerHTML = html.trim();
        var card = holder.querySelector("[data-ticket]");
        if (!card) return null;
        var info = meta.states[card.getAttribute("data-status")];
        var target = info && info.column ? column(info.column) : null;
        if (!target) return null;
        var list = target.querySelector("[data-cards]");
        list.insertBefore(card, list.firstChild);
        changeCount(target, 1);
        return card;
      })
      .catch(function () { return null; });
  }

  function ticketKey(event) {
    return (event.data && event.data.ticket) || event.target_label;
  }

  function onTransition(event) {
    var key = ticketKey(event);
    var to = event.data && event.data.to;
    if (!key || !to) return null;
    var card = cardOf(key);
    if (card) {
      place(card, to);
      return null;
    }
    // A ticket the page has not shown (new, or beyond a column's limit): the server renders
    // its card as it is now.
    return fetchCard(key);
  }

  function progressRow(event) {
    var card = cardOf(ticketKey(event));
    return card ? card.querySelector("[data-progress]") : null;
  }

  function onAttemptStarted(event) {
    var row = progressRow(event);
    if (!row) return;
    row.setAttribute("data-attempt", String(event.data.attempt || 0));
    row.setAttribute("data-passed", "0");
    row.setAttribute("data-run", "0");
    row.setAttribute("data-tokens", "0");
    renderProgress(row);
  }

  function onCheck(event) {
    var row = progressRow(event);
    if (!row) return;
    var data = event.data || {};
    var passed = parseInt(row.getAttribute("data-passed"), 10) || 0;
    row.setAttribute("data-passed", String(passed + (data.passed ? 1 : 0)));
    row.setAttribute("data-run", String(data.index || 0));
    if (data.of) row.setAttribute("data-total", String(data.of));
    renderProgress(row);
  }

  function onTokens(event) {
    var row = progressRow(event);
    if (!row) return;
    var tokens = (event.data && event.data.tokens) || 0;
    var before = parseInt(row.getAttribute("data-tokens"), 10) || 0;
    row.setAttribute("data-tokens", String(Math.max(before, tokens)));
    renderProgress(row);
  }

  function onFinished(event) {
    var card = cardOf(ticketKey(event));
    var outcome = event.data && event.data.outcome;
    if (!card || !outcome) return;
    var badge = card.querySelector("[data-outcome]");
    var info = meta.outcomes[outcome];
    if (!badge || !info) return;
    badge.textContent = (event.data.attempt ? "#" + event.data.attempt + " " : "") + info.label;
    setTone(badge, info.tone);
    badge.classList.remove("hidden");
  }

  var handlers = {
    "ticket.transition": onTransition,
    "attempt.started": onAttemptStarted,
    "attempt.check": onCheck,
    "attempt.tokens": onTokens,
    "attempt.finished": onFinished,
  };

  // One event at a time: a card being fetched must exist before its next event is applied.
  var queue = Promise.resolve();

  function onEvent(event) {
    var handler = handlers[event.type];
    if (!handler) return;
    queue = queue.then(function () { return handler(event); }).catch(function () {});
  }

  // Exposed for other scripts of the page (and the browser test): feed an event by hand.
  window.HAAO = window.HAAO || {};
  window.HAAO.board = { handle: onEvent, idle: function () { return queue; } };

  var live = window.HAAO.live;
  if (!live || typeof live.subscribe !== "function") {
    setStatus("off");
    return;
  }
  var after = parseInt(board.getAttribute("data-after"), 10) || 0;
  setStatus("connecting");
  var subscription = live.subscribe(board.getAttribute("data-stream"), {
    after: after,
    onEvent: onEvent,
    onStatus: setStatus,
  });
  window.addEventListener("pagehide", function () {
    if (subscription && subscription.close) subscription.close();
  });
})();
