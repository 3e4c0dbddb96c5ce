// A virtualized list: only the items in and near the viewport are in the
// DOM. Rendered items are measured (ResizeObserver keeps it up to date),
// the rest estimated; a spacer keeps the scroll height. The item at the top
// of the viewport stays put when items above it change height or are
// inserted; in follow mode the list stays scrolled to the bottom.

export class VList {
  /**
   * @param scroller  the element that scrolls (overflow-y: auto)
   * @param opts.render(item) → HTMLElement; opts.key(item); opts.sig(item) → a string
   *        that changes when the item must be drawn again; opts.estimate(item) → px
   */
  constructor(scroller, { render, key, sig, estimate, overscan = 600, onRender = null }) {
    this.scroller = scroller;
    this.renderItem = render;
    this.keyOf = key;
    this.sigOf = sig;
    this.estimate = estimate;
    this.overscan = overscan;
    this.onRender = onRender;
    this.items = [];
    this.index = new Map();
    this.heights = new Map();
    this.nodes = new Map();
    this.offsets = new Float64Array(1);
    this.dirty = true;
    this.following = true;
    this.first = 0;
    this.last = -1;
    this.spacer = document.createElement('div');
    this.spacer.className = 'vlist-spacer';
    this.win = document.createElement('div');
    this.win.className = 'vlist-window';
    this.spacer.appendChild(this.win);
    scroller.appendChild(this.spacer);
    this.scheduled = false;
    this.ro = new ResizeObserver((entries) => {
      let changed = false;
      for (const en of entries) {
        const k = en.target.__vkey;
        if (k === undefined) continue;
        const hgt = en.target.offsetHeight;
        if (hgt && this.heights.get(k) !== hgt) changed = true;
      }
      if (changed) this.schedule();
    });
    // The scroller has `overflow-anchor: none`: only the user and this list move it.
    scroller.addEventListener('scroll', () => {
      this.following = this.atBottom();
      this.schedule();
    }, { passive: true });
    window.addEventListener('resize', () => this.schedule());
  }

  atBottom() {
    const s = this.scroller;
    return s.scrollTop + s.clientHeight >= s.scrollHeight - 8;
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    requestAnimationFrame(() => {
      this.scheduled = false;
      this.render();
    });
  }

  heightOf(i) {
    const it = this.items[i];
    const h = this.heights.get(this.keyOf(it));
    return h === undefined ? this.estimate(it) : h;
  }

  recalc() {
    const n = this.items.length;
    if (this.offsets.length !== n + 1) this.offsets = new Float64Array(n + 1);
    let y = 0;
    for (let i = 0; i < n; i++) {
      this.offsets[i] = y;
      y += this.heightOf(i);
    }
    this.offsets[n] = y;
    this.spacer.style.height = `${Math.ceil(y)}px`;
    this.dirty = false;
  }

  /** The index of the item at pixel `y` (binary search over offsets). */
  indexAt(y) {
    const n = this.items.length;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.offsets[mid] <= y) lo = mid;
      else hi = mid - 1;
    }
    return Math.max(0, lo);
  }

  /** The item at the top of the viewport and how far into it the viewport starts. */
  anchor() {
    if (!this.items.length) return null;
    if (this.dirty) this.recalc();
    const top = this.scroller.scrollTop;
    const i = this.indexAt(top);
    return { key: this.keyOf(this.items[i]), delta: top - this.offsets[i] };
  }

  setScroll(y) {
    const s = this.scroller;
    const max = Math.max(0, s.scrollHeight - s.clientHeight);
    const v = Math.max(0, Math.min(max, Math.round(y)));
    if (Math.abs(s.scrollTop - v) >= 1) s.scrollTop = v;
  }

  /** Replaces the items, keeping the item at the top of the viewport in place (or the bottom in follow mode). */
  setItems(items) {
    const a = this.following ? null : this.anchor();
    this.items = items;
    this.index = new Map();
    for (let i = 0; i < items.length; i++) this.index.set(this.keyOf(items[i]), i);
    this.dirty = true;
    this.recalc();
    if (a && this.index.has(a.key)) this.setScroll(this.offsets[this.index.get(a.key)] + a.delta);
    this.render();
  }

  /** Draws again the items whose signature changed (e.g. a result arrived). */
  refresh() {
    this.schedule();
  }

  render() {
    if (this.dirty) this.recalc();
    const s = this.scroller;
    const n = this.items.length;
    if (!n) {
      this.win.replaceChildren();
      this.first = 0;
      this.last = -1;
      return;
    }
    for (let pass = 0; pass < 4; pass++) {
      if (this.following) this.setScroll(this.offsets[n]);
      const top = s.scrollTop;
      const a = this.indexAt(top);
      const aDelta = top - this.offsets[a];
      const first = this.indexAt(Math.max(0, top - this.overscan));
      const last = this.indexAt(top + s.clientHeight + this.overscan);
      const want = [];
      const keep = new Set();
      for (let i = first; i <= last; i++) {
        const it = this.items[i];
        const k = this.keyOf(it);
        const sig = this.sigOf(it);
        let rec = this.nodes.get(k);
        if (!rec || rec.sig !== sig) {
          if (rec) this.ro.unobserve(rec.node);
          const node = this.renderItem(it);
          node.__vkey = k;
          rec = { node, sig };
          this.nodes.set(k, rec);
          this.ro.observe(node);
        }
        keep.add(k);
        want.push(rec.node);
      }
      const cur = this.win.children;
      let same = cur.length === want.length;
      for (let i = 0; same && i < want.length; i++) if (cur[i] !== want[i]) same = false;
      if (!same) this.win.replaceChildren(...want);
      for (const [k, rec] of this.nodes) {
        if (!keep.has(k)) {
          this.ro.unobserve(rec.node);
          this.nodes.delete(k);
        }
      }
      this.first = first;
      this.last = last;
      this.win.style.transform = `translateY(${this.offsets[first]}px)`;
      let changed = false;
      for (let i = first; i <= last; i++) {
        const k = this.keyOf(this.items[i]);
        const node = this.nodes.get(k).node;
        const hgt = node.offsetHeight;
        if (this.heights.get(k) !== hgt) {
          this.heights.set(k, hgt);
          changed = true;
        }
      }
      if (!changed) break;
      this.recalc();
      this.win.style.transform = `translateY(${this.offsets[first]}px)`;
      if (!this.following) this.setScroll(this.offsets[a] + aDelta);
    }
    if (this.onRender) this.onRender(this.first, this.last);
  }

  /** The index of the first item visible at the top of the viewport. */
  topIndex() {
    if (this.dirty) this.recalc();
    return this.indexAt(this.scroller.scrollTop + 1);
  }

  /** Scrolls item i into view ('start' | 'center' | 'end'); leaves follow mode. */
  scrollToIndex(i, block = 'start') {
    if (!this.items.length) return;
    const idx = Math.max(0, Math.min(this.items.length - 1, i));
    this.following = false;
    for (let pass = 0; pass < 3; pass++) {
      if (this.dirty) this.recalc();
      const s = this.scroller;
      const y = this.offsets[idx];
      const hgt = this.heightOf(idx);
      let target = y - 8;
      if (block === 'center') target = y - (s.clientHeight - Math.min(hgt, s.clientHeight)) / 2;
      else if (block === 'end') target = y + hgt - s.clientHeight + 8;
      this.setScroll(target);
      this.render();
    }
  }

  scrollToBottom() {
    this.following = true;
    this.render();
  }

  /** The rendered node of item i, if it is in the DOM. */
  nodeAt(i) {
    const it = this.items[i];
    if (!it) return null;
    const rec = this.nodes.get(this.keyOf(it));
    return rec ? rec.node : null;
  }

  /** Forgets the drawing and measure of one item (it is drawn again). */
  forget(k) {
    const rec = this.nodes.get(k);
    if (rec) rec.sig = null;
    this.schedule();
  }
}
