/*
 * Live updates of the two gate pages (requirement = Gate 1, ticket = Gate 2).
 *
 * The pages are complete without this file: it only subscribes to the event stream
 * (window.HAAO.live from live.js) after the last event the server rendered
 * (data-after), and then
 *   - ticket page: appends events to the timeline, updates the progress rows of a
 *     running attempt, and re-reads the page's [data-live-section] parts when the
 *     ticket moves on (a transition, an attempt starting or ending, …);
 *   - requirement page: while the Tech Lead decomposes, reloads the proposal when a
 *     requirement.* event of this requirement arrives; afterwards re-reads the status
 *     (#requirement-status) when one of its tickets moves, until a final state.
 * The words of the timeline mirror tickets/templatetags/tickets_ui.py `summarize`.
 */
(function () {
  "use strict";

  var doc = document;

  function announce(text) {  // app.js's, which screen readers hear in #live-region
    if (window.HAAO && window.HAAO.announce) window.HAAO.announce(text);
  }

  function liveApi() {
    return window.HAAO && window.HAAO.live && typeof window.HAAO.live.subscribe === "function"
      ? window.HAAO.live : null;
  }

  function localize(root) {
    if (window.HAAO && typeof window.HAAO.localizeTimes === "function") {
      window.HAAO.localizeTimes(root);
    }
  }

  /* Money as a decimal string: 2 to 6 decimals, no float arithmetic. */
  function money(value) {
    var text = String(value == null ? "0" : value);
    if (!/^-?\d+(\.\d+)?$/.test(text)) return text;
    var parts = text.split(".");
    var fraction = (parts[1] || "").slice(0, 6).replace(/0+$/, "");
    while (fraction.length < 2) fraction += "0";
    return parts[0] + "." + fraction + " USD";
  }

  function state(value) { return String(value || "?").replace(/_/g, " "); }

  function summarize(type, data) {
    data = data || {};
    var attempt = data.attempt != null ? "Attempt " + data.attempt : "Attempt";
    var text;
    switch (type) {
      case "ticket.transition":
        text = state(data.from) + " → " + state(data.to);
        var why = data.feedback || data.reason;
        return why ? text + ": " + why : text;
      case "ticket.dispatched":
        return attempt + " dispatched to " + (data.endpoint || "?") + " (" + (data.model || "?") +
          ", " + (data.executor || "?") + ")";
      case "attempt.started":
        return attempt + " started on " + (data.endpoint || "?") + " (" + (data.model || "?") + ")";
      case "attempt.tokens":
        return attempt + ": " + (data.tokens || 0) + " tokens streamed";
      case "attempt.answered":
        return attempt + ": the model answered (" + (data.output_tokens || 0) + " tokens)";
      case "attempt.check":
        text = attempt + ": check " + (data.index != null ? data.index : "?") + " of " +
          (data.of != null ? data.of : "?") + " “" + (data.check || "") + "” " +
          (data.passed ? "passed" : "failed") + " (exit " + data.exit_code + ")";
        return data.expectation ? text + ": " + data.expectation : text;
      case "attempt.finished":
        text = attempt + " finished: " + state(data.outcome);
        if (data.cost != null) text += ", " + money(data.cost);
        return data.error ? text + " — " + data.error : text;
      case "attempt.waiting":
        return attempt + " waits for " + (data.endpoint || "?") + ": " + (data.reason || "");
      case "attempt.moved":
        return attempt + " moved from " + (data.from || "?") + " to " + (data.to || "?");
      case "ticket.escalated":
        return "Escalated to the Tech Lead: " + (data.reason || "");
      case "ticket.audited":
        return "Audit " + (data.passed ? "passed" : "failed") + ": " + (data.summary || "");
      case "guardrail.refused":
        return "Guardrail refused (" + (data.rule || "?") + " at " + (data.point || "?") + "): " +
          (data.message || "");
      case "ticket.merged":
        return "Merged into " + (data.branch || "?") + " as " + String(data.commit || "").slice(0, 12);
      case "ticket.merge_conflict":
      case "ticket.merge_failed":
        return "Merge failed: " + (data.summary || data.reason || "");
      case "ticket.spec_edited":
        return "Spec edited: " + ((data.changed && data.changed.length) ? data.changed.join(", ") : "no change");
      case "ticket.proposed":
        return "Proposed for " + (data.requirement || "?");
      default:
        text = String(type || "").replace(/\./g, " ").replace(/_/g, " ");
        return text.charAt(0).toUpperCase() + text.slice(1);
    }
  }

  /* Re-read this page and swap the parts marked data-live-section (same ids). */
  function refresher(selector, onDone) {
    var timer = null;
    var running = false;
    var again = false;
    function run() {
      if (running) { again = true; return; }
      running = true;
      fetch(window.location.pathname, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html");
          doc.querySelectorAll(selector).forEach(function (old) {
            if (!old.id) return;
            // Never throw away what someone is typing (e.g. rejection feedback).
            var active = doc.activeElement;
            if (active && old.contains(active) && /^(TEXTAREA|INPUT|SELECT)$/.test(active.tagName)) return;
            var replacement = fresh.getElementById(old.id);
            if (replacement) {
              old.replaceWith(replacement);
              localize(replacement);
            }
          });
          if (onDone) onDone(fresh);
        })
        .catch(function () { /* the Refresh link still works */ })
        .then(function () {
          running = false;
          if (again) { again = false; run(); }
        });
    }
    return function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(run, 300);
    };
  }

  function showStatus(root, status) {
    var node = root.querySelector("[data-live-status]");
    if (!node) return;
    var words = { connecting: "Connecting…", live: "Live", reconnecting: "Reconnecting…",
                  closed: "Live updates stopped", refused: "Live updates unavailable" };
    node.hidden = false;
    node.textContent = "";
    var label = doc.createElement("span");
    label.className = status === "live" ? "font-medium text-green-700" : "text-slate-500";
    label.textContent = words[status] || status;
    node.appendChild(label);
    if (status !== "live") {
      node.appendChild(doc.createTextNode(" · "));
      var link = doc.createElement("a");
      link.className = "link";
      link.href = window.location.pathname;
      link.textContent = "Refresh";
      node.appendChild(link);
    }
  }

  /* ------------------------------------------------ ticket page (Gate 2) */
  var STRUCTURAL = {
    "ticket.transition": 1, "ticket.dispatched": 1, "attempt.started": 1, "attempt.answered": 1,
    "attempt.finished": 1, "ticket.escalated": 1, "ticket.audited": 1, "guardrail.refused": 1,
    "ticket.merged": 1, "ticket.merge_conflict": 1, "ticket.merge_failed": 1, "attempt.moved": 1
  };

  function appendEvent(event) {
    var list = doc.getElementById("timeline");
    if (!list || event.type === "attempt.tokens") return;
    var item = doc.createElement("li");
    var tone = event.type === "guardrail.refused" ? "border-red-400"
      : event.type === "ticket.transition" ? "border-indigo-400" : "border-slate-200";
    item.className = "timeline-item grid grid-cols-[auto_minmax(0,1fr)] gap-x-3 border-l-2 py-2 pl-3 " + tone;
    item.setAttribute("data-seq", String(event.seq));
    var when = doc.createElement("span");
    when.className = "text-xs text-slate-500";
    var time = doc.createElement("time");
    time.className = "whitespace-nowrap";
    time.setAttribute("datetime", event.created_at);
    time.setAttribute("data-format", "seconds");
    time.textContent = String(event.created_at).replace("T", " ").slice(0, 19);
    when.appendChild(time);
    var body = doc.createElement("span");
    body.className = "min-w-0 break-words";
    var strong = doc.createElement("span");
    strong.className = "font-medium text-slate-900";
    strong.textContent = summarize(event.type, event.data);
    var who = doc.createElement("span");
    who.className = "text-xs text-slate-500";
    who.textContent = "· " + (event.actor_label || "");
    body.appendChild(strong);
    body.appendChild(doc.createTextNode(" "));
    body.appendChild(who);
    item.appendChild(when);
    item.appendChild(body);
    var scroller = doc.getElementById("timeline-scroll");
    var atBottom = scroller && scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
    list.appendChild(item);
    localize(item);
    var empty = doc.getElementById("timeline-empty");
    if (empty) empty.hidden = true;
    if (scroller && atBottom) scroller.scrollTop = scroller.scrollHeight;
  }

  function updateProgress(event) {
    var data = event.data || {};
    var row = doc.querySelector('[data-progress][data-attempt="' + data.attempt + '"]');
    if (!row) return;
    if (event.type === "attempt.tokens") {
      var tokens = row.querySelector("[data-tokens]");
      if (tokens) tokens.textContent = String(data.tokens || 0);
      var output = doc.querySelector('[data-stream-output][data-attempt="' + data.attempt + '"]');
      if (output && data.text) {
        var following = output.scrollTop + output.clientHeight >= output.scrollHeight - 4;
        output.textContent = (output.textContent + data.text).slice(-20000);
        if (following) output.scrollTop = output.scrollHeight;
      }
    } else if (event.type === "attempt.check") {
      var passed = row.querySelector("[data-checks-passed]");
      var total = row.querySelector("[data-checks-total]");
      if (passed && data.passed) passed.textContent = String((parseInt(passed.textContent, 10) || 0) + 1);
      if (total && data.of != null) total.textContent = String(data.of);
    }
  }

  function startTicket(root, live) {
    var after = parseInt(root.getAttribute("data-after"), 10) || 0;
    var lastStatus = null;
    var refresh = refresher("[data-live-section]", function () {
      if (lastStatus) showStatus(root, lastStatus);
    });
    live.subscribe(root.getAttribute("data-stream"), {
      after: after,
      onEvent: function (event) {
        if (typeof event.seq === "number") {
          if (event.seq <= after) return;  // already on the page
          after = event.seq;
        }
        appendEvent(event);
        if (event.type === "attempt.tokens" || event.type === "attempt.check") updateProgress(event);
        if (STRUCTURAL[event.type]) refresh();
        if (event.type === "ticket.transition") {
          announce(root.getAttribute("data-ticket") + ": " + summarize(event.type, event.data));
        }
      },
      onStatus: function (status) { lastStatus = status; showStatus(root, status); }
    });
  }

  /* ------------------------------------------------ requirement page (Gate 1) */
  var FINAL_REQUIREMENT = { delivered: 1, cancelled: 1, failed: 1 };

  function startRequirement(root, live) {
    if (FINAL_REQUIREMENT[root.getAttribute("data-status")]) return;
    var key = root.getAttribute("data-requirement");
    var after = parseInt(root.getAttribute("data-after"), 10) || 0;
    var subscription = null;
    function settled(fresh) {
      var page = fresh.getElementById("requirement-page");
      var status = page ? page.getAttribute("data-status") : null;
      var was = root.getAttribute("data-status");
      if (!status || status === was) return;
      root.setAttribute("data-status", status);
      var badge = doc.querySelector("#requirement-status .badge");
      announce(was === "decomposing" && status === "proposed"
        ? key + ": the proposed tickets are ready for review."
        : key + " is " + (badge ? badge.textContent.trim() : status) + " now.");
      if (FINAL_REQUIREMENT[status] && subscription) subscription.close();
    }
    // While the Tech Lead decomposes the whole proposal is re-read; later only the status,
    // which follows the requirement's tickets (tickets/services/requirements.py).
    var refreshBody = refresher("#requirement-body", settled);
    var refreshStatus = refresher("#requirement-status", settled);
    function ticketOfThis(label) {
      var status = doc.getElementById("requirement-status");
      var keys = status ? (status.getAttribute("data-tickets") || "").split(" ") : [];
      return keys.indexOf(label) >= 0;
    }
    subscription = live.subscribe(root.getAttribute("data-stream"), {
      after: after,
      onEvent: function (event) {
        if (typeof event.seq === "number") {
          if (event.seq <= after) return;
          after = event.seq;
        }
        var type = String(event.type);
        if (type.indexOf("requirement.") === 0 && event.target_label === key) {
          if (root.getAttribute("data-status") === "decomposing") refreshBody();
          else refreshStatus();
        } else if ((type === "ticket.transition" || type === "ticket.merged") &&
                   ticketOfThis(event.target_label)) {
          refreshStatus();
        }
      },
      onStatus: function (status) { showStatus(root, status); }
    });
  }

  function start() {
    var live = liveApi();
    if (!live) return;  // server-rendered page with its Refresh link
    var ticket = doc.getElementById("ticket-page");
    if (ticket) startTicket(ticket, live);
    var requirement = doc.getElementById("requirement-page");
    if (requirement) startRequirement(requirement, live);
  }

  if (doc.readyState === "loading") doc.addEventListener("DOMContentLoaded", start);
  else start();
})();
