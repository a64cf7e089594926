// Sevenfold dashboard: progressive enhancement only. Every page works
// without this script.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // A login link carries the token in the fragment (never sent to the
  // server, never in its logs): fill the form and submit it once.
  var form = document.getElementById("login");
  if (form && location.hash.indexOf("#token=") === 0) {
    var token = decodeURIComponent(location.hash.slice("#token=".length));
    history.replaceState(null, "", location.pathname + location.search);
    form.elements.token.value = token;
    form.submit();
  }
  // Ask before actions that cannot be undone.
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) {
        e.preventDefault();
      }
    });
  });
});
