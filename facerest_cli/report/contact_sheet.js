"use strict";
(function () {
  // Data written by facerest_cli/report/html.py: files [[name, source href, output href]], one object per face.
  var DATA = JSON.parse(document.getElementById("facerest-data").textContent);
  var FILES = DATA.files, FACES = DATA.faces;
  var PAGE = 240; // pairs drawn at a time: 10,000 faces stay responsive
  var sheet = document.getElementById("sheet");
  var more = document.getElementById("more");
  var ctl = {
    sort: document.getElementById("sort"),
    flagged: document.getElementById("flagged"),
    maxcos: document.getElementById("maxcos"),
    query: document.getElementById("query"),
    shown: document.getElementById("shown")
  };
  var list = [], drawn = 0;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(x, n) { return x === null || x === undefined ? "\u2013" : Number(x).toFixed(n); }
  function cosKey(f) { return f.c === null || f.c === undefined ? 2 : f.c; } // faces without a cosine sort last

  function stats() {
    var n = FACES.length, flagged = 0, cs = [];
    FACES.forEach(function (f) { if (f.fl) flagged++; if (f.c !== null && f.c !== undefined) cs.push(f.c); });
    cs.sort(function (a, b) { return a - b; });
    function pct(q) { // linear interpolation, as numpy.percentile
      if (!cs.length) return null;
      var pos = (cs.length - 1) * q / 100, lo = Math.floor(pos), hi = Math.ceil(pos);
      return cs[lo] + (cs[hi] - cs[lo]) * (pos - lo);
    }
    var parts = [n + " faces in " + FILES.length + (FILES.length === 1 ? " file" : " files")];
    if (DATA.models.length) parts.push("identity model " + DATA.models.join(", "));
    if (cs.length) parts.push("cosine p5 " + fmt(pct(5), 3) + " \u00b7 p50 " + fmt(pct(50), 3) + " \u00b7 p95 " + fmt(pct(95), 3));
    parts.push(flagged + " flagged");
    document.getElementById("stats").textContent = parts.join(" \u00b7 ");
  }

  function thumb(src, label) {
    var fig = el("figure");
    if (src) {
      var img = el("img");
      img.loading = "lazy";
      img.decoding = "async";
      img.width = 128;
      img.height = 128;
      img.alt = label;
      img.src = src;
      fig.appendChild(img);
    } else {
      fig.appendChild(el("div", "missing", "no thumbnail"));
    }
    fig.appendChild(el("figcaption", null, label));
    return fig;
  }

  // The 68 projected 3DMM landmarks, drawn over the input thumbnail (coordinates are fractions of the crop).
  function landmarks(lm) {
    var c = el("canvas", "lm");
    c.width = 128;
    c.height = 128;
    var g = c.getContext("2d");
    g.fillStyle = "rgba(61, 220, 132, 0.85)";
    for (var i = 0; i + 1 < lm.length; i += 2) {
      g.beginPath();
      g.arc(lm[i] * 128, lm[i + 1] * 128, 1.2, 0, 2 * Math.PI);
      g.fill();
    }
    return c;
  }

  function card(f) {
    var file = FILES[f.k];
    var fig = el("figure", f.fl ? "pair flagged" : "pair");
    fig.dataset.cosine = f.c === null || f.c === undefined ? "" : String(f.c);
    var imgs = el("div", "imgs");
    var inThumb = thumb(f.ti, "input");
    if (f.lm && f.ti) inThumb.insertBefore(landmarks(f.lm), inThumb.firstChild.nextSibling);
    imgs.appendChild(inThumb);
    imgs.appendChild(thumb(f.to, "restored"));
    fig.appendChild(imgs);
    var cap = el("figcaption");
    var line1 = el("div");
    var name = el(file[2] ? "a" : "span", "file", file[0]);
    if (file[2]) { name.href = file[2]; name.title = "full output image"; }
    line1.appendChild(name);
    line1.appendChild(document.createTextNode(" \u00b7 face " + f.i + (f.fr !== null && f.fr !== undefined ? " \u00b7 frame " + f.fr : "")));
    if (file[1]) {
      var src = el("a", "meta", "source file");
      src.href = file[1];
      line1.appendChild(document.createTextNode(" \u00b7 "));
      line1.appendChild(src);
    }
    cap.appendChild(line1);
    var line2 = el("div");
    line2.appendChild(el("span", "cos", "cosine " + fmt(f.c, 3)));
    if (f.fl) { line2.appendChild(document.createTextNode(" ")); line2.appendChild(el("span", "badge", "flagged")); }
    line2.appendChild(el("span", "meta", " \u00b7 score " + fmt(f.sc, 2) + " \u00b7 " + fmt(f.sz, 0) + " px"));
    cap.appendChild(line2);
    var line3 = el("div", "meta", f.r + " \u00b7 strength " + fmt(f.st, 2) + (f.d ? " \u00b7 " + f.d : ""));
    if (f.a && f.a.length > 1) {
      line3.title = f.a.map(function (a) { return "strength " + fmt(a[0], 2) + " \u2192 cosine " + fmt(a[1], 3); }).join("\n");
      line3.textContent += " (" + f.a.length + " attempts)";
    }
    cap.appendChild(line3);
    if (f.p || f.sh) {
      var bits = [];
      if (f.p) bits.push("yaw " + fmt(f.p[0], 0) + "\u00b0 pitch " + fmt(f.p[1], 0) + "\u00b0 roll " + fmt(f.p[2], 0) + "\u00b0");
      if (f.sh) bits.push("shape \u0394 " + fmt(f.sh[0], 3));
      var line4 = el("div", "meta", bits.join(" \u00b7 "));
      if (f.sh && f.sh[1]) { line4.appendChild(document.createTextNode(" ")); line4.appendChild(el("span", "badge", "shape changed")); }
      cap.appendChild(line4);
    }
    fig.appendChild(cap);
    return fig;
  }

  var SORTS = {
    "cos-asc": function (a, b) { return cosKey(a) - cosKey(b) || a.n - b.n; },
    "cos-desc": function (a, b) { return cosKey(b) - cosKey(a) || a.n - b.n; },
    "order": function (a, b) { return a.n - b.n; },
    "score-asc": function (a, b) { return (a.sc || 0) - (b.sc || 0) || a.n - b.n; },
    "size-asc": function (a, b) { return (a.sz || 0) - (b.sz || 0) || a.n - b.n; }
  };

  function drawMore() {
    var frag = document.createDocumentFragment();
    var end = Math.min(list.length, drawn + PAGE);
    for (; drawn < end; drawn++) frag.appendChild(card(list[drawn]));
    sheet.appendChild(frag);
    more.hidden = drawn >= list.length;
    ctl.shown.textContent = "showing " + drawn + " of " + list.length + (list.length !== FACES.length ? " (filtered from " + FACES.length + ")" : "");
  }

  function update() {
    var onlyFlagged = ctl.flagged.checked;
    var maxcos = ctl.maxcos.value === "" ? null : Number(ctl.maxcos.value);
    var q = ctl.query.value.trim().toLowerCase();
    list = FACES.filter(function (f) {
      if (onlyFlagged && !f.fl) return false;
      if (maxcos !== null && !(f.c !== null && f.c !== undefined && f.c < maxcos)) return false;
      if (q && FILES[f.k][0].toLowerCase().indexOf(q) < 0) return false;
      return true;
    });
    list.sort(SORTS[ctl.sort.value] || SORTS["cos-asc"]);
    sheet.textContent = "";
    drawn = 0;
    drawMore();
  }

  FACES.forEach(function (f, n) { f.n = n; });
  if (!DATA.models.length) ctl.sort.value = "order";
  stats();
  ["change", "input"].forEach(function (ev) {
    [ctl.sort, ctl.flagged, ctl.maxcos, ctl.query].forEach(function (c) { c.addEventListener(ev, update); });
  });
  more.addEventListener("click", drawMore);
  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (entries) {
      if (entries.some(function (e) { return e.isIntersecting; }) && drawn < list.length) drawMore();
    }, { rootMargin: "600px" }).observe(more);
  }
  update();
})();
