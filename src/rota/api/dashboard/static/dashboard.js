// rota dashboard: theme toggle, keyboard navigation, and live updates over server-sent
// events. No inline script anywhere (the Content-Security-Policy forbids it): this file
// and htmx are all the JavaScript the pages run.
(function () {
  "use strict";
  var THEME_KEY = "rota-theme";

  // -- theme: the system's unless the toggle stored a choice ---------------------------
  function applyTheme(theme) {
    if (theme === "dark" || theme === "light") {
      document.documentElement.setAttribute("data-theme", theme);
    } else {
      document.documentElement.removeAttribute("data-theme");
    }
  }
  function currentTheme() {
    var chosen = document.documentElement.getAttribute("data-theme");
    if (chosen) return chosen;
    return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }
  function toggleTheme() {
    var next = currentTheme() === "dark" ? "light" : "dark";
    try { localStorage.setItem(THEME_KEY, next); } catch (e) { /* private mode */ }
    applyTheme(next);
  }
  try { applyTheme(localStorage.getItem(THEME_KEY)); } catch (e) { /* private mode */ }

  // -- keyboard: g <key> goes to a page, / searches, j/k move in tables, ? helps -------
  var pendingG = 0;
  function typing(target) {
    var tag = (target && target.tagName) || "";
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
  }
  function rows() {
    var table = document.querySelector("table[data-nav-table]");
    return table ? Array.prototype.slice.call(table.querySelectorAll("tbody tr")) : [];
  }
  function moveRow(step) {
    var all = rows();
    if (!all.length) return;
    var index = all.findIndex(function (r) { return r.classList.contains("selected"); });
    if (index >= 0) all[index].classList.remove("selected");
    index = Math.max(0, Math.min(all.length - 1, index + step));
    all[index].classList.add("selected");
    all[index].scrollIntoView({ block: "nearest" });
  }
  function openRow() {
    var row = document.querySelector("table[data-nav-table] tr.selected");
    if (!row) return false;
    var href = row.getAttribute("data-href") || (row.querySelector("a[href]") || {}).href;
    if (href) window.location.assign(href);
    return Boolean(href);
  }
  function showKeys() {
    var dialog = document.getElementById("keys");
    if (dialog && !dialog.open) dialog.showModal();
  }
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    var key = event.key;
    if (pendingG && Date.now() - pendingG < 1500) {
      pendingG = 0;
      var link = document.querySelector('.top nav a[data-key="' + CSS.escape(key) + '"]');
      if (link) { event.preventDefault(); window.location.assign(link.getAttribute("href")); }
      return;
    }
    pendingG = 0;
    if (key === "g") { pendingG = Date.now(); return; }
    if (key === "/") {
      var search = document.querySelector("[data-search], input[type=search]");
      if (search) { event.preventDefault(); search.focus(); search.select(); }
    } else if (key === "j") { moveRow(1); }
    else if (key === "k") { moveRow(-1); }
    else if (key === "Enter") { if (openRow()) event.preventDefault(); }
    else if (key === "?") { showKeys(); }
    else if (key === "t") { toggleTheme(); }
  });

  document.addEventListener("click", function (event) {
    var target = event.target.closest && event.target.closest("[data-theme-toggle], [data-keys-open]");
    if (!target) return;
    if (target.hasAttribute("data-theme-toggle")) toggleTheme();
    else showKeys();
  });

  // -- live: refresh the parts of a page marked data-live when runs or approvals change --
  // Each such element has hx-trigger="rota:live" and says what to fetch (hx-get/hx-select).
  // Bursts of events are coalesced into one refresh per second.
  function startLive() {
    var url = document.body.getAttribute("data-live-url");
    if (!url || !window.EventSource || !document.querySelector("[data-live]")) return;
    var source = new EventSource(url);
    var timer = null;
    function refresh() {
      timer = null;
      document.querySelectorAll("[data-live]").forEach(function (element) {
        if (window.htmx) window.htmx.trigger(element, "rota:live");
      });
    }
    function changed(event) {
      document.dispatchEvent(new CustomEvent("rota:change", { detail: event }));
      if (!timer) timer = setTimeout(refresh, 1000);
    }
    source.addEventListener("run", changed);
    source.addEventListener("approval", changed);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startLive);
  else startLive();
})();
