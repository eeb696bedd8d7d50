/* Linked zoom and a shared crosshair across the cluster page's time charts (.linked graphs).
 * Attached from a clientside callback (ffray.link) each time a chart's figure changes; served as
 * an asset from 'self', so the Content-Security-Policy needs no inline script for it.
 * - zoom/pan/reset on one chart -> the same x range on the others (Plotly.relayout);
 * - hover on one chart -> a hover label and spike line at the nearest time on the others
 *   (Plotly.Fx.hover with noHoverEvent, so the others do not echo it back). */
(function () {
  function plots() {
    return Array.prototype.slice.call(document.querySelectorAll('.linked .js-plotly-plot'))
      .filter(function (gd) { return gd.data && gd.data.length && gd.offsetParent !== null; });
  }

  function xRange(ev) {
    if (ev['xaxis.range[0]'] !== undefined) return {'xaxis.range': [ev['xaxis.range[0]'], ev['xaxis.range[1]']]};
    if (ev['xaxis.range']) return {'xaxis.range': ev['xaxis.range']};
    if (ev['xaxis.autorange']) return {'xaxis.autorange': true};
    return null;
  }

  function nearest(xs, x) { // index of the time in xs closest to x (ISO strings sort as times)
    var t = Date.parse(String(x).replace(' ', 'T') + 'Z'), best = -1, bestD = Infinity;
    var lo = 0, hi = xs.length - 1;
    while (lo <= hi) {
      var mid = (lo + hi) >> 1, tm = Date.parse(String(xs[mid]).replace(' ', 'T') + 'Z');
      var d = Math.abs(tm - t);
      if (d < bestD) { bestD = d; best = mid; }
      if (tm < t) lo = mid + 1; else hi = mid - 1;
    }
    return best;
  }

  function hoverOthers(src, ev) {
    if (!ev || !ev.points || !ev.points.length || !(ev.event instanceof MouseEvent)) return;
    var p = ev.points[0], x = p.x, name = p.data && p.data.name;
    plots().forEach(function (gd) {
      if (gd === src) return;
      var curve = 0;
      for (var i = 0; i < gd.data.length; i++) { if (gd.data[i].name === name) { curve = i; break; } }
      var tr = gd.data[curve];
      if (!tr || !tr.x || !tr.x.length || tr.type === 'heatmap') return;
      var k = nearest(tr.x, x);
      if (k >= 0) Plotly.Fx.hover(gd, [{curveNumber: curve, pointNumber: k}], 'xy', true);
    });
  }

  function attach(gd) {
    if (gd.__ffrayLinked || typeof gd.on !== 'function') return;  // (not drawn yet: a later pass)
    gd.__ffrayLinked = true;
    gd.on('plotly_relayout', function (ev) {
      if (gd.__ffraySyncing) return;
      var upd = xRange(ev || {});
      if (!upd) return;
      plots().forEach(function (o) {
        if (o === gd) return;
        o.__ffraySyncing = true;
        Promise.resolve(Plotly.relayout(o, upd)).finally(function () { o.__ffraySyncing = false; });
      });
    });
    gd.on('plotly_hover', function (ev) { hoverOthers(gd, ev); });
    gd.on('plotly_unhover', function () {
      plots().forEach(function (o) { if (o !== gd) Plotly.Fx.unhover(o); });
    });
  }

  window.dash_clientside = Object.assign({}, window.dash_clientside, {
    ffray: {
      link: function () {
        // charts are drawn asynchronously after their figures arrive: attach now and again later
        [0, 300, 1500].forEach(function (ms) {
          setTimeout(function () {
            document.querySelectorAll('.linked .js-plotly-plot').forEach(attach);
          }, ms);
        });
        return window.dash_clientside.no_update;
      }
    }
  });
})();
