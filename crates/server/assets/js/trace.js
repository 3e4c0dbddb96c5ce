// The trace model: events kept as parsed JSON by seq (deduplicated), turned
// into display entries: a tool call paired with its result (by id) and its
// file edits, sub-agent calls under their parent, usage folded into the
// entry before it. Nothing here touches the DOM.

import { stripAnsi } from './ansi.js';

const SHELL = new Set(['bash', 'exec_command', 'shell', 'run_shell_command', 'local_shell', 'shell_command', 'execute_command', 'terminal', 'run_command', 'container.exec', 'run_terminal_cmd']);
const EDIT = new Set(['edit', 'multiedit', 'write', 'apply_patch', 'replace', 'write_file', 'create_file', 'edit_file', 'str_replace_based_edit_tool', 'str_replace_editor', 'notebookedit', 'patch', 'search_replace']);
const READ = new Set(['read', 'read_file', 'view', 'read_many_files', 'view_file']);
const TODO = new Set(['todowrite', 'update_plan', 'todo', 'write_todos', 'todo_write', 'todoread']);
const AGENT = new Set(['task', 'agent', 'spawn_agent', 'send_input', 'subagent', 'dispatch_agent', 'delegate']);

/** 'shell' | 'edit' | 'read' | 'todo' | 'agent' | 'other' for a tool name. */
export function toolCategory(name, input) {
  const n = String(name ?? '').toLowerCase();
  if (SHELL.has(n)) {
    const c = shellCommand(input);
    if (Array.isArray(input?.command) && input.command[0] === 'apply_patch') return 'edit';
    if (c && /^\s*apply_patch\b/.test(c) && c.includes('*** Begin Patch')) return 'edit';
    return 'shell';
  }
  if (EDIT.has(n)) return 'edit';
  if (READ.has(n)) return 'read';
  if (TODO.has(n)) return 'todo';
  if (AGENT.has(n)) return 'agent';
  return 'other';
}

function fromArgv(argv) {
  const a = argv.map((x) => String(x));
  if (a.length >= 3 && /(^|\/)(ba|z|da)?sh$/.test(a[0]) && /^-l?c$/.test(a[1])) return a.slice(2).join(' ');
  return a.map((x) => (/^[\w./:=@%+-]+$/.test(x) ? x : `'${x.replace(/'/g, "'\\''")}'`)).join(' ');
}

/** The command line of a shell tool call, whatever the harness calls its field. */
export function shellCommand(input) {
  if (typeof input === 'string') return input;
  if (!input || typeof input !== 'object') return '';
  for (const k of ['command', 'cmd', 'commands', 'script']) {
    const v = input[k];
    if (typeof v === 'string') return v;
    if (Array.isArray(v) && v.length) return fromArgv(v);
  }
  return '';
}

/** The file a tool call is about, if any. */
export function toolPath(input) {
  if (!input || typeof input !== 'object') return '';
  for (const k of ['file_path', 'filePath', 'absolute_path', 'path', 'notebook_path', 'target_file', 'dir_path']) {
    if (typeof input[k] === 'string') return input[k];
  }
  if (Array.isArray(input.changes) && input.changes[0] && typeof input.changes[0].path === 'string') {
    const n = input.changes.length;
    return n > 1 ? `${input.changes[0].path} (+${n - 1} more)` : input.changes[0].path;
  }
  if (typeof input.input === 'string') {
    const m = /\*\*\* (?:Add|Update|Delete) File: (.+)/.exec(input.input);
    if (m) return m[1];
  }
  return '';
}

function firstLine(s) {
  const ls = String(s).split('\n').filter((l) => l.trim());
  return ls.length > 1 ? `${ls[0]} …` : ls[0] || '';
}

/** A one-line summary of a tool call (as `errand logs` prints it). */
export function toolSummary(name, input) {
  const n = String(name ?? '').toLowerCase();
  const cat = toolCategory(name, input);
  const field = (k) => (input && typeof input === 'object' && typeof input[k] === 'string' ? input[k] : null);
  let s = null;
  if (cat === 'shell') s = firstLine(shellCommand(input));
  else if (cat === 'edit' || cat === 'read') s = toolPath(input) || (typeof input === 'string' ? (/\*\*\* (?:Add|Update|Delete) File: (.+)/.exec(input) || [])[1] : null);
  else if (cat === 'todo') {
    const items = todoItems(input);
    s = items ? `${items.length} item${items.length === 1 ? '' : 's'}` : null;
  } else if (cat === 'agent') s = field('description') || field('prompt') || field('message');
  else if (['grep', 'glob', 'grep_search', 'search_file_content', 'glob_search'].includes(n)) s = field('pattern') || field('query');
  else if (['webfetch', 'web_fetch'].includes(n)) s = field('url') || field('prompt');
  else if (['websearch', 'web_search', 'google_web_search'].includes(n)) s = field('query') || (input && input.action && input.action.query);
  else if (['list_directory', 'ls'].includes(n)) s = field('dir_path') || field('path');
  if (!s) {
    try {
      s = typeof input === 'string' ? input : JSON.stringify(input ?? {});
    } catch {
      s = '';
    }
  }
  s = String(s).replace(/[\u0000-\u001f]/g, ' ');
  return s.length > 120 ? `${s.slice(0, 119)}…` : s;
}

/** Todo/plan items as [{ text, status: 'completed'|'in_progress'|'pending' }], or null. */
export function todoItems(input) {
  if (!input || typeof input !== 'object') return null;
  const list = input.todos || input.plan || input.items || input.tasks;
  if (!Array.isArray(list)) return null;
  return list.map((t) => {
    if (typeof t === 'string') return { text: t, status: 'pending' };
    const text = t.content || t.step || t.text || t.description || t.title || t.activeForm || JSON.stringify(t);
    let status = String(t.status || (t.completed === true ? 'completed' : t.completed === false ? 'pending' : 'pending')).toLowerCase();
    if (['done', 'complete', 'completed', 'finished'].includes(status)) status = 'completed';
    else if (['in_progress', 'in-progress', 'active', 'running', 'doing'].includes(status)) status = 'in_progress';
    else if (['cancelled', 'canceled'].includes(status)) status = 'cancelled';
    else status = 'pending';
    return { text: String(text), status };
  });
}

const KIND = {
  state: 'state',
  notice: 'notice',
  session_start: 'session',
  user_message: 'user',
  assistant_message: 'assistant',
  thinking: 'thinking',
  result: 'result',
  error: 'error',
  warning: 'warning',
  run_diff: 'diff',
  model_call: 'model',
  note: 'note',
  image: 'image',
  raw: 'raw',
};

class Builder {
  constructor(ui) {
    this.ui = ui;
    this.entries = [];
    this.calls = new Map();
    this.lastTool = null;
    this.last = null;
  }

  entry(kind, ev) {
    let ui = this.ui.get(ev.seq);
    if (!ui) {
      ui = { v: 0 };
      this.ui.set(ev.seq, ui);
    }
    const e = { kind, key: ev.seq, events: [ev], ui, depth: 0, parent: null };
    this.entries.push(e);
    this.last = e;
    return e;
  }

  attach(e, ev) {
    e.events.push(ev);
  }

  push(ev) {
    switch (ev.type) {
      case 'tool_call': {
        const e = this.entry('tool', ev);
        e.call = ev;
        e.result = null;
        e.edits = [];
        e.cat = toolCategory(ev.name, ev.input);
        e.children = 0;
        if (ev.parent_id) {
          const p = this.calls.get(ev.parent_id);
          if (p) {
            e.parent = p;
            e.depth = Math.min(p.depth + 1, 6);
            p.children += 1;
          } else e.depth = 1;
        }
        this.calls.set(ev.id, e);
        this.lastTool = e;
        return;
      }
      case 'tool_result': {
        const e = this.calls.get(ev.id);
        if (e && !e.result) {
          e.result = ev;
          this.attach(e, ev);
        } else {
          const o = this.entry('orphan', ev);
          o.result = ev;
        }
        return;
      }
      case 'file_edit': {
        const t = this.lastTool;
        if (t && t.cat === 'edit' && !t.edits.some((x) => x.path === ev.path && x.diff === ev.diff)) {
          t.edits.push(ev);
          this.attach(t, ev);
        } else this.entry('edit', ev);
        return;
      }
      case 'image': {
        // With the tool result or the user message it belongs to.
        const call = ev.tool_id ? this.calls.get(ev.tool_id) : null;
        const owner = call || (!ev.tool_id && this.last && this.last.kind === 'user' ? this.last : null);
        if (owner) {
          (owner.images = owner.images || []).push(ev);
          this.attach(owner, ev);
        } else this.entry('image', ev);
        return;
      }
      case 'usage': {
        if (this.last && this.last.kind !== 'state') this.attach(this.last, ev);
        else this.entry('usage', ev);
        return;
      }
      default:
        this.entry(KIND[ev.type] || 'raw', ev);
    }
  }
}

/** Every event of a run (or file) and the entries shown for them. */
export class Trace {
  constructor() {
    this.bySeq = new Map();
    this.ui = new Map();
    this.builder = null;
    this.entries = [];
    this.builtMax = 0;
    this.minSeq = Infinity;
    this.maxSeq = 0;
    this.version = 0;
    this.usage = { input: 0, output: 0, cost: 0, hasCost: false };
    this.metered = { requests: 0, input: 0, output: 0, cost: 0, hasCost: false };
    this.result = null;
    this.texts = new Map();
    this._visible = null;
  }

  get size() {
    return this.bySeq.size;
  }

  /** Adds events (any order, duplicates ignored); true when anything was new. */
  add(events) {
    const fresh = [];
    for (const ev of events) {
      if (!ev || typeof ev !== 'object') continue;
      const seq = Number(ev.seq);
      if (!Number.isFinite(seq) || this.bySeq.has(seq)) continue;
      ev.seq = seq;
      this.bySeq.set(seq, ev);
      fresh.push(ev);
      if (seq < this.minSeq) this.minSeq = seq;
      if (seq > this.maxSeq) this.maxSeq = seq;
      if (ev.type === 'usage') {
        this.usage.input += Number(ev.input_tokens) || 0;
        this.usage.output += Number(ev.output_tokens) || 0;
        if (typeof ev.cost_usd === 'number') {
          this.usage.cost += ev.cost_usd;
          this.usage.hasCost = true;
        }
      } else if (ev.type === 'model_call') {
        const u = ev.usage || {};
        this.metered.requests += 1;
        this.metered.input += Number(u.input_tokens) || 0;
        this.metered.output += Number(u.output_tokens) || 0;
        if (typeof u.cost_usd === 'number') {
          this.metered.cost += u.cost_usd;
          this.metered.hasCost = true;
        }
      } else if (ev.type === 'result' && (!this.result || this.result.seq < seq)) this.result = ev;
    }
    if (!fresh.length) return false;
    fresh.sort((a, b) => a.seq - b.seq);
    if (this.builder && fresh[0].seq > this.builtMax) {
      for (const ev of fresh) this.builder.push(ev);
      this.builtMax = fresh[fresh.length - 1].seq;
    } else this.rebuild();
    this.version += 1;
    this._visible = null;
    return true;
  }

  rebuild() {
    const seqs = Array.from(this.bySeq.keys()).sort((a, b) => a - b);
    const b = new Builder(this.ui);
    for (const s of seqs) b.push(this.bySeq.get(s));
    this.builder = b;
    this.builtMax = seqs.length ? seqs[seqs.length - 1] : 0;
    this.entries = b.entries;
  }

  /**
   * Tokens and cost so far. A metered run's figures are the gateway's
   * (`model_call` events: the provider's own answers), with the harness's
   * report beside them as `harness`; otherwise the harness's usage events, or
   * its final result's totals when larger.
   */
  totals() {
    const harness = this.harnessTotals();
    const m = this.metered;
    if (!m.requests) return harness;
    return { input: m.input, output: m.output, cost: m.hasCost ? m.cost : 0, metered: true, requests: m.requests, harness };
  }

  harnessTotals() {
    let { input, output, cost, hasCost } = this.usage;
    const r = this.result && this.result.usage;
    if (r) {
      input = Math.max(input, Number(r.input_tokens) || 0);
      output = Math.max(output, Number(r.output_tokens) || 0);
      if (typeof r.cost_usd === 'number') {
        cost = Math.max(cost, r.cost_usd);
        hasCost = true;
      }
    }
    return { input, output, cost: hasCost ? cost : null };
  }

  /** The entries not hidden inside a collapsed sub-agent call. */
  visible() {
    if (this._visible) return this._visible;
    const out = [];
    for (const e of this.entries) {
      let p = e.parent;
      let hidden = false;
      while (p) {
        if (p.ui.collapsed) {
          hidden = true;
          break;
        }
        p = p.parent;
      }
      if (!hidden) out.push(e);
    }
    this._visible = out;
    return out;
  }

  invalidate() {
    this._visible = null;
    this.version += 1;
  }

  /** Lower-case text of an entry, for search. */
  textOf(e) {
    const c = this.texts.get(e.key);
    if (c && c.n === e.events.length && c.kind === e.kind) return c.text;
    const parts = [];
    for (const ev of e.events) {
      switch (ev.type) {
        case 'tool_call':
          parts.push(ev.name, toolSummary(ev.name, ev.input));
          try {
            parts.push(typeof ev.input === 'string' ? ev.input : JSON.stringify(ev.input));
          } catch {
            /* unserializable */
          }
          break;
        case 'tool_result':
          parts.push(stripAnsi(ev.output || ''));
          break;
        case 'file_edit':
          parts.push(ev.path, ev.diff || '');
          break;
        case 'user_message':
        case 'assistant_message':
        case 'thinking':
          parts.push(ev.text || '');
          break;
        case 'result':
          parts.push(ev.text || '');
          break;
        case 'error':
        case 'warning':
        case 'notice':
          parts.push(ev.message || '');
          break;
        case 'state':
          parts.push(ev.state || '', ev.reason || '');
          break;
        case 'run_diff':
          parts.push(ev.stat || '', ev.diff || '');
          break;
        case 'raw':
          parts.push(ev.line || '');
          break;
        case 'note':
          parts.push(ev.text || '');
          break;
        case 'image':
          parts.push(`image ${ev.media_type || ''}`);
          break;
        case 'model_call':
          parts.push(ev.provider || '', ev.model || '', String(ev.status || ''), ev.error || '');
          break;
        default:
          break;
      }
    }
    const text = parts.join('\n').toLowerCase();
    this.texts.set(e.key, { n: e.events.length, kind: e.kind, text });
    return text;
  }

  /** Indexes (in `list`) of entries whose text contains `q`. */
  search(q, list) {
    const needle = q.toLowerCase();
    const out = [];
    if (!needle) return out;
    for (let i = 0; i < list.length; i++) {
      if (this.textOf(list[i]).includes(needle)) out.push(i);
    }
    return out;
  }
}
