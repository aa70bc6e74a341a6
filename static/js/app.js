/*
 * HAAO portal behaviour. Plain JavaScript, no dependencies; every page
 * works without it, this only adds conveniences:
 *
 *   [data-dismissible] [data-dismiss]  dismiss an alert / message
 *   form[data-confirm="Question?"]     ask before submitting (also on a
 *                                      submit button: button[data-confirm])
 *     data-confirm-label="Revoke"      text of the confirm button
 *     data-confirm-tone="danger"       red confirm button
 *   [data-copy="#id"]                  copy the value/text of #id
 *   [data-copy="literal text"]         copy the literal text
 *   <time datetime="...T...">          shown in the viewer's time zone
 *     data-format="datetime|seconds|date|relative", data-localize="off" to skip
 *   details[data-menu]                 closes on Escape / outside click
 */
(function () {
  "use strict";

  var doc = document;

  function announce(text) {
    var region = doc.getElementById("live-region");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(function () { region.textContent = text; }, 50);
  }

  /* ------------------------------------------------ dismiss messages */
  doc.addEventListener("click", function (event) {
    var button = event.target.closest("[data-dismiss]");
    if (!button) return;
    var box = button.closest("[data-dismissible]");
    if (!box) return;
    var container = box.parentElement;
    box.remove();
    if (container && !container.querySelector("[data-dismissible]") && container.children.length === 0) {
      container.remove();
    }
    var main = doc.getElementById("content");
    if (main) main.focus({ preventScroll: true });
  });

  /* ------------------------------------------------ confirm dialogs */
  var dialog = null;

  function buildDialog() {
    var d = doc.createElement("dialog");
    d.className = "w-[min(28rem,calc(100vw-2rem))] rounded-lg border border-slate-200 bg-white p-0 text-slate-900 shadow-xl backdrop:bg-slate-900/40";
    d.setAttribute("aria-labelledby", "confirm-dialog-title");
    d.setAttribute("aria-describedby", "confirm-dialog-message");
    d.innerHTML =
      '<form method="dialog" class="p-5 sm:p-6">' +
      '<h2 id="confirm-dialog-title" class="text-base font-semibold text-slate-900">Please confirm</h2>' +
      '<p id="confirm-dialog-message" class="mt-2 text-sm text-slate-600"></p>' +
      '<div class="mt-6 flex flex-col-reverse gap-2 sm:flex-row sm:justify-end">' +
      '<button value="cancel" class="btn btn-secondary" autofocus>Cancel</button>' +
      '<button value="confirm" class="btn btn-primary" data-confirm-ok>Confirm</button>' +
      "</div></form>";
    doc.body.appendChild(d);
    return d;
  }

  function askConfirm(message, label, tone) {
    if (typeof HTMLDialogElement !== "function") {
      return Promise.resolve(window.confirm(message));
    }
    dialog = dialog || buildDialog();
    dialog.querySelector("#confirm-dialog-message").textContent = message;
    var ok = dialog.querySelector("[data-confirm-ok]");
    ok.textContent = label || "Confirm";
    ok.className = "btn " + (tone === "danger" ? "btn-danger" : "btn-primary");
    dialog.returnValue = "";
    return new Promise(function (resolve) {
      dialog.addEventListener("close", function onClose() {
        dialog.removeEventListener("close", onClose);
        resolve(dialog.returnValue === "confirm");
      });
      dialog.showModal();
    });
  }

  doc.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) return;
    if (form.method === "dialog") return;
    var submitter = event.submitter || null;
    var source = submitter && submitter.hasAttribute("data-confirm") ? submitter
      : form.hasAttribute("data-confirm") ? form : null;
    if (!source) return;
    if (form.dataset.confirmed === "1") {
      delete form.dataset.confirmed;
      return;
    }
    event.preventDefault();
    var message = source.getAttribute("data-confirm") || "Are you sure?";
    askConfirm(message, source.getAttribute("data-confirm-label"), source.getAttribute("data-confirm-tone"))
      .then(function (confirmed) {
        if (!confirmed) return;
        form.dataset.confirmed = "1";
        if (typeof form.requestSubmit === "function") {
          form.requestSubmit(submitter && submitter.form === form ? submitter : undefined);
        } else {
          if (submitter && submitter.name) {
            var hidden = doc.createElement("input");
            hidden.type = "hidden";
            hidden.name = submitter.name;
            hidden.value = submitter.value;
            form.appendChild(hidden);
          }
          form.submit();
        }
      });
  });

  /* ------------------------------------------------ copy to clipboard */
  function textOf(spec) {
    if (spec && spec.charAt(0) === "#") {
      var el = doc.querySelector(spec);
      if (el) return "value" in el && el.tagName !== "BUTTON" ? el.value : el.textContent.trim();
    }
    return spec || "";
  }

  function legacyCopy(text) {
    var ta = doc.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.style.position = "fixed";
    ta.style.opacity = "0";
    doc.body.appendChild(ta);
    ta.select();
    var ok = false;
    try { ok = doc.execCommand("copy"); } catch (e) { ok = false; }
    ta.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  doc.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    event.preventDefault();
    var text = textOf(button.getAttribute("data-copy"));
    var copy = navigator.clipboard && window.isSecureContext
      ? navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); })
      : legacyCopy(text);
    var labelEl = button.querySelector("[data-copy-label]") || button;
    var original = labelEl.getAttribute("data-original") || labelEl.textContent;
    labelEl.setAttribute("data-original", original);
    copy.then(function () {
      labelEl.textContent = "Copied";
      announce("Copied to clipboard");
    }, function () {
      labelEl.textContent = "Press Ctrl+C";
      var spec = button.getAttribute("data-copy");
      var target = spec && spec.charAt(0) === "#" ? doc.querySelector(spec) : null;
      if (target && target.select) target.select();
      announce("Copy failed. The text is selected; press Control C to copy.");
    }).then(function () {
      window.clearTimeout(button._copyTimer);
      button._copyTimer = window.setTimeout(function () { labelEl.textContent = original; }, 2000);
    });
  });

  doc.addEventListener("focusin", function (event) {
    var el = event.target;
    if (el && el.hasAttribute && el.hasAttribute("data-select-on-focus") && el.select) el.select();
  });

  /* ------------------------------------------------ local times */
  var rtf = typeof Intl.RelativeTimeFormat === "function" ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  var fmtDateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  var fmtSeconds = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  var fmtDate = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
  var fmtFull = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "long" });

  function relative(date) {
    var seconds = (date.getTime() - Date.now()) / 1000;
    var units = [["year", 31536000], ["month", 2592000], ["week", 604800], ["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(seconds) >= units[i][1] || units[i][0] === "second") {
        return rtf.format(Math.round(seconds / units[i][1]), units[i][0]);
      }
    }
    return "";
  }

  function localizeTimes(root) {
    var nodes = (root || doc).querySelectorAll("time[datetime]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      if (el.getAttribute("data-localize") === "off") continue;
      var value = el.getAttribute("datetime");
      // Only instants (with a time part); plain dates have no time zone.
      if (!/\dT\d/.test(value)) continue;
      var date = new Date(value);
      if (isNaN(date.getTime())) continue;
      var format = el.getAttribute("data-format") || "datetime";
      if (format === "relative" && rtf) {
        el.textContent = relative(date);
      } else if (format === "date") {
        el.textContent = fmtDate.format(date);
      } else if (format === "seconds") {
        el.textContent = fmtSeconds.format(date);
      } else {
        el.textContent = fmtDateTime.format(date);
      }
      el.title = fmtFull.format(date);
    }
  }

  /* ------------------------------------------------ <details> menus */
  function closeMenus(except) {
    var open = doc.querySelectorAll("details[data-menu][open]");
    for (var i = 0; i < open.length; i++) {
      if (open[i] !== except && !open[i].contains(except)) open[i].removeAttribute("open");
    }
  }

  doc.addEventListener("click", function (event) {
    var inside = event.target.closest("details[data-menu]");
    closeMenus(inside);
  });

  doc.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var menu = event.target.closest && event.target.closest("details[data-menu][open]");
    if (!menu) return;
    menu.removeAttribute("open");
    var summary = menu.querySelector("summary");
    if (summary) summary.focus();
  });

  function init() {
    localizeTimes(doc);
    doc.documentElement.classList.add("js");
  }

  if (doc.readyState === "loading") {
    doc.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }

  window.HAAO = { localizeTimes: localizeTimes, confirm: askConfirm, announce: announce };
})();
