// Loaded after require.js and before the ipywidgets HTML manager (embed-amd.js), on the
// pages that hold widgets (nb_ipywidgets_js in _config.yml).
(function () {
  // 1. The manager loads its fonts from next to the URL that RequireJS gives its module,
  //    which is relative to the page (chapters/@jupyter-widgets/...): map the module to
  //    the folder it is served from.
  var me = document.currentScript.src;
  require.config({
    paths: {
      "@jupyter-widgets/html-manager/dist": new URL("widgets/html-manager", me).href,
    },
  });
  // 2. The widgets typeset their labels with MathJax 2's API (MathJax.Hub.Queue); the
  //    book loads MathJax 3, which has typesetPromise instead. Give whatever object
  //    window.MathJax holds (the configuration, then MathJax 3 itself) a Hub that
  //    forwards to MathJax 3.
  function withHub(mathjax) {
    if (mathjax && typeof mathjax === "object" && !mathjax.Hub) {
      mathjax.Hub = {
        Queue: function (command) {
          var element = command && command[2];
          var current = window.MathJax;
          if (element && current && current.typesetPromise) {
            current.typesetPromise([element]).catch(function () {});
          }
        },
      };
    }
    return mathjax;
  }
  // 3. A stack of frames disposes of the view it hides; a message the manager posted to
  //    that view (a resize, delivered on the next animation frame) then reaches a view
  //    that is gone, a TypeError when a knob turns twice within a frame. ipywidgets
  //    guards its Accordion against this; give the two widget classes the same guard.
  document.addEventListener("DOMContentLoaded", function () {
    require(["@jupyter-widgets/base"], function (base) {
      [base.JupyterLuminoWidget, base.JupyterLuminoPanelWidget].forEach(function (cls) {
        var process = cls.prototype.processMessage;
        cls.prototype.processMessage = function (message) {
          if (this._view) {
            process.call(this, message);
          }
        };
      });
    });
  });
  var current = withHub(window.MathJax);
  Object.defineProperty(window, "MathJax", {
    configurable: true,
    get: function () { return current; },
    set: function (value) { current = withHub(value); },
  });
})();
