// perfpack report: interactive flame graphs drawn from embedded data, and time-range selection
// on the heat maps. No network, no libraries. Untrusted strings (frame names) only ever reach
// the page through textContent and canvas text.
(function () {
  'use strict';
  var ROW = 17;

  function hash(s) {
    var x = 2166136261;
    for (var i = 0; i < s.length; i++) {
      x ^= s.charCodeAt(i);
      x = Math.imul(x, 16777619) >>> 0;
    }
    return (x % 1000) / 1000;
  }

  // flamegraph.pl's palettes: user code hot (red-yellow), kernel orange, JIT green.
  function colour(name) {
    var v = hash(name);
    if (name.endsWith('_[k]')) {
      return 'rgb(' + Math.round(220 + 35 * v) + ',' + Math.round(120 + 60 * v) + ',' + Math.round(20 + 40 * v) + ')';
    }
    if (name.endsWith('_[j]')) {
      return 'rgb(' + Math.round(50 + 60 * v) + ',' + Math.round(170 + 60 * v) + ',' + Math.round(50 + 40 * v) + ')';
    }
    if (name === '--') {
      return 'rgb(160,160,160)';
    }
    return 'rgb(' + Math.round(205 + 50 * v) + ',' + Math.round(230 * v) + ',' + Math.round(55 * v) + ')';
  }

  function human(ns) {
    var a = Math.abs(ns);
    if (a >= 1e9) return +(ns / 1e9).toFixed(3) + ' s';
    if (a >= 1e6) return +(ns / 1e6).toFixed(3) + ' ms';
    if (a >= 1e3) return +(ns / 1e3).toFixed(3) + ' µs';
    return ns + ' ns';
  }

  function Flame(root) {
    var self = this;
    this.root = root;
    this.unit = root.getAttribute('data-unit');
    var d = JSON.parse(root.querySelector('.flame-data').textContent);
    this.d = d;
    var n = d.parent.length;
    this.n = n;
    this.depth = new Int32Array(n);
    for (var i = 1; i < n; i++) this.depth[i] = this.depth[d.parent[i]] + 1;
    this.value = new Float64Array(n);
    this.x = new Float64Array(n);
    this.zoom = 0;
    this.matched = null;
    this.rects = [];
    this.canvas = root.querySelector('canvas');
    this.details = root.querySelector('.details');
    this.canvas.addEventListener('mousemove', function (e) { self.hover(e); });
    this.canvas.addEventListener('mouseleave', function () { self.details.textContent = '\u00a0'; });
    this.canvas.addEventListener('click', function (e) {
      var i = self.hit(e);
      if (i >= 0) { self.zoom = i; self.draw(); }
    });
    root.querySelector('.reset').addEventListener('click', function () { self.zoom = 0; self.draw(); });
    root.querySelector('.all').addEventListener('click', function () { self.setRange(null, null); });
    var search = root.querySelector('.search');
    search.addEventListener('input', function () { self.search(search.value); });
    window.addEventListener('resize', function () { self.draw(); });
    // Idle stacks (pid 0), hidden while the box is unticked.
    this.idle = new Uint8Array(n);
    (d.idle || []).forEach(function (leaf) { self.idle[leaf] = 1; });
    this.hideIdle = !!d.hide_idle;
    var showIdle = root.querySelector('.show-idle');
    if (showIdle) showIdle.addEventListener('change', function () {
      self.hideIdle = !showIdle.checked;
      self.setRange(self.t0, self.t1);
    });
    this.setRange(null, null);
  }

  // Weights of the buckets that overlap [t0, t1) ns (everything when t0 is null).
  Flame.prototype.setRange = function (t0, t1) {
    var d = this.d, c = d.cells, v = this.value, bns = d.bucket_ns;
    this.t0 = t0;
    this.t1 = t1;
    v.fill(0);
    var samples = 0, lo = Infinity, hi = -Infinity;
    for (var k = 0; k < c.length; k += 4) {
      if (this.hideIdle && this.idle[c[k + 1]]) continue;
      if (t0 !== null && bns > 0) {
        var s = (c[k] + d.bucket_base) * bns, e = s + bns;
        if (e <= t0 || s >= t1) continue;
        if (s < lo) lo = s;
        if (e > hi) hi = e;
      }
      v[c[k + 1]] += c[k + 2];
      samples += c[k + 3];
    }
    for (var i = this.n - 1; i > 0; i--) v[d.parent[i]] += v[i];
    var cursor = new Float64Array(this.n);
    for (i = 1; i < this.n; i++) {
      var p = d.parent[i];
      this.x[i] = cursor[p];
      cursor[p] += v[i];
      cursor[i] = this.x[i];
    }
    this.samples = samples;
    this.zoom = 0;
    var range = this.root.querySelector('.range');
    var all = this.root.querySelector('.all');
    if (t0 === null) {
      range.textContent = bns > 0 ? 'whole capture: ' + samples + ' samples' : '';
      all.hidden = true;
      this.root.removeAttribute('data-range');
    } else if (samples === 0) {
      range.textContent = 'no samples in ' + human(t0) + ' – ' + human(t1);
      all.hidden = false;
      this.root.setAttribute('data-range', t0 + '-' + t1);
    } else {
      range.textContent = 'time ' + human(lo) + ' – ' + human(hi) + ': ' + samples + ' samples';
      all.hidden = false;
      this.root.setAttribute('data-range', lo + '-' + hi);
    }
    this.root.setAttribute('data-samples', String(samples));
    this.draw();
    if (this.pattern) this.search(this.pattern);
  };

  Flame.prototype.draw = function () {
    var d = this.d, cv = this.canvas, box = cv.parentNode;
    var W = Math.max(300, box.clientWidth || 1200);
    var z = this.zoom, v = this.value;
    // What is wide enough to see, first: the picture is as tall as its deepest visible frame.
    var rects = [], deepest = 0;
    if (v[0] > 0) {
      var ancestors = {};
      for (var a = z; a >= 0; a = d.parent[a]) ancestors[a] = true;
      var x0 = this.x[z], scale = W / v[z], zd = this.depth[z];
      for (var i = 0; i < this.n; i++) {
        if (v[i] <= 0) continue;
        var px, w;
        if (this.depth[i] < zd || (this.depth[i] === zd && i !== z)) {
          if (!ancestors[i]) continue;
          px = 0; w = W;
        } else {
          px = (this.x[i] - x0) * scale;
          w = v[i] * scale;
          if (px >= W || px + w <= 0 || w < 0.4 || this.x[i] < x0 || this.x[i] >= x0 + v[z]) continue;
        }
        rects.push([px, w, i]);
        if (this.depth[i] > deepest) deepest = this.depth[i];
      }
    }
    var H = (deepest + 1) * ROW;
    var dpr = window.devicePixelRatio || 1;
    cv.width = Math.round(W * dpr);
    cv.height = Math.round(H * dpr);
    cv.style.width = W + 'px';
    cv.style.height = H + 'px';
    var g = cv.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, W, H);
    g.font = '12px Verdana, sans-serif';
    g.textBaseline = 'middle';
    this.rects = [];
    if (rects.length === 0) {
      g.fillStyle = '#666';
      g.fillText('no samples in this range', 10, H - ROW / 2);
      return;
    }
    for (var k = 0; k < rects.length; k++) {
      var r = rects[k], node = r[2];
      var y = (deepest - this.depth[node]) * ROW;
      var name = d.names[d.name[node]];
      g.fillStyle = this.matched && this.matched[node] ? 'rgb(230,0,230)' : (node === 0 ? 'rgb(250,200,200)' : colour(name));
      g.fillRect(r[0], y, Math.max(r[1] - 0.5, 0.4), ROW - 1);
      if (r[1] > 28) {
        g.fillStyle = ancestors[node] && node !== z ? '#555' : '#000';
        var text = name, max = r[1] - 6;
        if (g.measureText(text).width > max) {
          var keep = Math.floor(max / 7.2) - 2;
          text = keep > 0 ? text.slice(0, keep) + '..' : '';
        }
        if (text) g.fillText(text, r[0] + 3, y + ROW / 2);
      }
      this.rects.push([r[0], y, r[1], node]);
    }
    // Deep stacks scroll inside the box; the roots, where the width is, stay in view.
    box.scrollTop = box.scrollHeight;
  };

  Flame.prototype.hit = function (e) {
    var r = this.canvas.getBoundingClientRect();
    var mx = e.clientX - r.left, my = e.clientY - r.top;
    for (var k = this.rects.length - 1; k >= 0; k--) {
      var q = this.rects[k];
      if (mx >= q[0] && mx < q[0] + q[2] && my >= q[1] && my < q[1] + ROW) return q[3];
    }
    return -1;
  };

  Flame.prototype.describe = function (i) {
    var v = this.value;
    var name = this.d.names[this.d.name[i]];
    var pct = v[0] > 0 ? (100 * v[i] / v[0]).toFixed(2) : '0';
    var amount = this.unit === 'ns' ? human(v[i]) : v[i] + ' ' + this.unit;
    return name + ' (' + amount + ', ' + pct + '%)';
  };

  Flame.prototype.hover = function (e) {
    var i = this.hit(e);
    this.details.textContent = i >= 0 ? this.describe(i) : '\u00a0';
  };

  // Highlights frames whose name matches the regular expression (a plain substring when it is
  // not one) and says how much of the graph they cover, recursion counted once.
  Flame.prototype.search = function (pattern) {
    var out = this.root.querySelector('.matched');
    this.pattern = pattern;
    if (!pattern) {
      this.matched = null;
      out.textContent = '';
      this.root.removeAttribute('data-matched');
      this.draw();
      return;
    }
    var re;
    try { re = new RegExp(pattern); } catch (err) {
      re = { test: function (s) { return s.indexOf(pattern) >= 0; } };
    }
    var d = this.d, v = this.value, m = new Uint8Array(this.n), covered = 0, nodes = 0;
    var under = new Uint8Array(this.n);
    for (var i = 1; i < this.n; i++) {
      under[i] = under[d.parent[i]] || m[d.parent[i]];
      if (re.test(d.names[d.name[i]])) {
        m[i] = 1;
        if (v[i] > 0) nodes++;
        if (!under[i]) covered += v[i];
      }
    }
    this.matched = m;
    var pct = v[0] > 0 ? 100 * covered / v[0] : 0;
    out.textContent = nodes > 0 ? 'Matched: ' + pct.toFixed(2) + '% in ' + nodes + ' frames' : 'no match';
    this.root.setAttribute('data-matched', pct.toFixed(2));
    this.draw();
  };

  var flames = {};
  document.querySelectorAll('.flame').forEach(function (el) { flames[el.id] = new Flame(el); });

  // Heat maps: a drag (or two clicks) selects a time range; the target flame graph redraws it.
  function Heat(div) {
    var self = this;
    this.div = div;
    this.kind = div.getAttribute('data-kind');
    this.target = flames[div.getAttribute('data-target')];
    this.svg = div.querySelector('svg');
    var g = this.svg.querySelector('[id="cells"]');
    this.g = g;
    this.step = +g.getAttribute('data-step-ns');
    this.rowNs = +g.getAttribute('data-row-ns');
    this.colMin = +g.getAttribute('data-col-min');
    this.ncols = +g.getAttribute('data-ncols');
    this.rowMin = +g.getAttribute('data-row-min');
    this.nrows = +g.getAttribute('data-nrows');
    var p = g.getAttribute('data-plot').split(' ').map(Number);
    this.left = p[0]; this.top = p[1]; this.pw = p[2]; this.ph = p[3];
    this.status = document.createElement('p');
    this.status.className = 'selection';
    this.status.textContent = this.target ? 'Drag across the map, or click two cells, to see the flame graph of that time.' : '';
    div.appendChild(this.status);
    this.band = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    this.band.setAttribute('class', 'band');
    this.band.setAttribute('y', this.top);
    this.band.setAttribute('height', this.ph);
    this.band.setAttribute('width', 0);
    this.svg.appendChild(this.band);
    this.anchor = null;
    this.down = null;
    if (!this.target) return;
    this.svg.addEventListener('mousedown', function (e) { self.down = self.point(e); e.preventDefault(); });
    this.svg.addEventListener('mousemove', function (e) {
      if (self.down) self.preview(self.down, self.point(e));
    });
    this.svg.addEventListener('mouseup', function (e) {
      if (!self.down) return;
      var a = self.down, b = self.point(e);
      self.down = null;
      if (Math.abs(a.x - b.x) < 3 && Math.abs(a.y - b.y) < 3) {
        self.click(b);
      } else {
        self.anchor = null;
        self.select(a, b);
      }
    });
  }

  Heat.prototype.point = function (e) {
    var pt = this.svg.createSVGPoint();
    pt.x = e.clientX; pt.y = e.clientY;
    var q = pt.matrixTransform(this.svg.getScreenCTM().inverse());
    var fx = (q.x - this.left) / this.pw * this.ncols + this.colMin;
    var fy = (this.top + this.ph - q.y) / this.ph * this.nrows + this.rowMin;
    return { x: q.x, y: q.y, col: Math.floor(fx), fcol: fx, row: Math.floor(fy) };
  };

  // [start, end) ns of the cell (offset maps) or column (time maps) under a point.
  Heat.prototype.span = function (p) {
    if (this.kind === 'offset') {
      var s = p.col * this.step + Math.max(0, p.row) * this.rowNs;
      return [s, s + this.rowNs];
    }
    return [p.col * this.step, (p.col + 1) * this.step];
  };

  Heat.prototype.click = function (p) {
    if (this.anchor) {
      var a = this.anchor;
      this.anchor = null;
      this.range(Math.min(a[0], this.span(p)[0]), Math.max(a[1], this.span(p)[1]));
    } else {
      this.anchor = this.span(p);
      this.range(this.anchor[0], this.anchor[1]);
      this.status.textContent += ' — click another cell to extend';
    }
  };

  Heat.prototype.select = function (a, b) {
    var sa = this.span(a), sb = this.span(b);
    this.range(Math.min(sa[0], sb[0]), Math.max(sa[1], sb[1]));
  };

  Heat.prototype.preview = function (a, b) {
    var x0 = Math.min(a.x, b.x), x1 = Math.max(a.x, b.x);
    this.band.setAttribute('x', x0);
    this.band.setAttribute('width', x1 - x0);
  };

  Heat.prototype.range = function (t0, t1) {
    var self = this;
    // Mark what is selected: the cells inside the range.
    this.g.querySelectorAll('rect').forEach(function (r) {
      var c = +r.getAttribute('data-col'), row = +r.getAttribute('data-row');
      var s = self.kind === 'offset' ? c * self.step + row * self.rowNs : c * self.step;
      var e = self.kind === 'offset' ? s + self.rowNs : s + self.step;
      r.classList.toggle('sel', s < t1 && e > t0);
    });
    var x = function (t) { return self.left + (t / self.step - self.colMin) / self.ncols * self.pw; };
    if (this.kind === 'offset') {
      this.band.setAttribute('width', 0);
    } else {
      this.band.setAttribute('x', x(t0));
      this.band.setAttribute('width', Math.max(1, x(t1) - x(t0)));
    }
    this.target.setRange(t0, t1);
    this.status.textContent = 'Selected ' + human(t0) + ' – ' + human(t1) + ': the CPU flame graph now shows ' +
      this.target.samples + ' samples of that time.';
  };

  var heats = [];
  document.querySelectorAll('.heat').forEach(function (el) { heats.push(new Heat(el)); });
  // For scripts (and the report's browser test): the live objects.
  window.perfpack = { flames: flames, heats: heats };
})();
