// A small syntax highlighter: comments, strings, numbers and keywords for
// common languages. Output is escaped HTML with `tok-*` classes.

import { esc, extOf } from './util.js';

const KW = {
  rust: 'as async await break const continue crate dyn else enum extern false fn for if impl in let loop match mod move mut pub ref return self Self static struct super trait true type unsafe use where while Some None Ok Err',
  js: 'async await break case catch class const continue debugger default delete do else export extends false finally for from function if import in instanceof let new null of return static super switch this throw true try typeof undefined var void while yield interface type enum implements readonly private public protected as',
  python: 'and as assert async await break class continue def del elif else except False finally for from global if import in is lambda None nonlocal not or pass raise return True try while with yield self match case',
  go: 'break case chan const continue default defer else fallthrough for func go goto if import interface map package range return select struct switch type var nil true false',
  c: 'auto break case char const continue default do double else enum extern float for goto if inline int long register return short signed sizeof static struct switch typedef union unsigned void volatile while class namespace template typename public private protected virtual override new delete this true false nullptr bool using try catch throw final abstract extends implements import package interface boolean byte null super synchronized var val fun when object is in let func guard',
  shell: 'if then else elif fi for while until do done case esac function in export local return readonly declare set unset shift exit source alias echo cd test true false',
  ruby: 'alias and begin break case class def defined do else elsif end ensure false for if in module next nil not or redo rescue retry return self super then true undef unless until when while yield require',
  sql: 'select from where and or not insert into values update set delete create table drop alter index join left right inner outer on group by order having limit offset as distinct null is in like primary key foreign references begin commit rollback union all',
  json: 'true false null',
  toml: 'true false',
  yaml: 'true false null yes no',
};

const COMMENT = {
  rust: ['//', '/*'],
  js: ['//', '/*'],
  go: ['//', '/*'],
  c: ['//', '/*'],
  python: ['#'],
  shell: ['#'],
  ruby: ['#'],
  toml: ['#'],
  yaml: ['#'],
  sql: ['--', '/*'],
  json: [],
};

const ALIASES = {
  rs: 'rust', rust: 'rust',
  js: 'js', mjs: 'js', cjs: 'js', jsx: 'js', ts: 'js', tsx: 'js', javascript: 'js', typescript: 'js', node: 'js',
  py: 'python', python: 'python', python3: 'python', pyi: 'python',
  go: 'go', golang: 'go',
  c: 'c', h: 'c', cc: 'c', cpp: 'c', cxx: 'c', hpp: 'c', 'c++': 'c', java: 'c', kt: 'c', kotlin: 'c', cs: 'c', csharp: 'c', swift: 'c', scala: 'c', dart: 'c', php: 'c',
  sh: 'shell', bash: 'shell', zsh: 'shell', shell: 'shell', console: 'shell', shellsession: 'shell', fish: 'shell',
  rb: 'ruby', ruby: 'ruby',
  sql: 'sql',
  json: 'json', jsonl: 'json', ndjson: 'json',
  toml: 'toml', ini: 'toml', cfg: 'toml',
  yaml: 'yaml', yml: 'yaml',
};

/** The highlighter's name for a fence language or a file path, or '' when none fits. */
export function langOf(nameOrPath) {
  const s = String(nameOrPath ?? '').trim().toLowerCase();
  if (!s) return '';
  if (ALIASES[s]) return ALIASES[s];
  const base = s.split('/').pop();
  if (base === 'makefile' || base === 'dockerfile') return 'shell';
  if (base === 'cargo.lock') return 'toml';
  return ALIASES[extOf(s)] || '';
}

const cache = new Map();

function tokenizer(lang) {
  if (cache.has(lang)) return cache.get(lang);
  const parts = [];
  const cm = COMMENT[lang] || [];
  if (lang === 'python') parts.push('"""[\\s\\S]*?(?:"""|$)', "'''[\\s\\S]*?(?:'''|$)");
  if (cm.includes('/*')) parts.push('/\\*[\\s\\S]*?(?:\\*/|$)');
  for (const c of cm) {
    if (c === '/*') continue;
    const e = c.replace(/[/#-]/g, (x) => `\\${x}`);
    parts.push(lang === 'shell' ? `(?:^|(?<=\\s))${e}[^\\n]*` : `${e}[^\\n]*`);
  }
  const comments = parts.length ? parts.join('|') : '(?!)';
  const strings = ['"(?:\\\\.|[^"\\\\\\n])*"?'];
  if (lang === 'rust') strings.push("'(?:\\\\.|[^'\\\\\\n])'", 'r#*"[\\s\\S]*?"#*');
  else if (lang !== 'json') strings.push("'(?:\\\\.|[^'\\\\\\n])*'?");
  if (lang === 'js' || lang === 'shell' || lang === 'go') strings.push('`(?:\\\\.|[^`\\\\])*`?');
  const re = new RegExp(
    `(${comments})|(${strings.join('|')})|(\\b(?:0x[0-9a-fA-F_]+|\\d[\\d_]*(?:\\.\\d+)?(?:[eE][+-]?\\d+)?)[a-zA-Z0-9_]*\\b)|([A-Za-z_$][\\w$]*)`,
    'gm',
  );
  const kw = new Set((KW[lang] || '').split(' ').filter(Boolean));
  const t = { re, kw };
  cache.set(lang, t);
  return t;
}

/** `code` as escaped HTML, highlighted for `lang` (a name from langOf; '' is plain). */
export function highlight(code, lang) {
  const src = String(code ?? '');
  if (!lang || src.length > 200000) return esc(src);
  const { re, kw } = tokenizer(lang);
  let out = '';
  let pos = 0;
  re.lastIndex = 0;
  let m;
  while ((m = re.exec(src))) {
    if (m[0] === '') {
      re.lastIndex += 1;
      continue;
    }
    let cls = null;
    if (m[1] !== undefined) cls = 'tok-c';
    else if (m[2] !== undefined) cls = 'tok-s';
    else if (m[3] !== undefined) cls = 'tok-n';
    else if (m[4] !== undefined && kw.has(m[4])) cls = 'tok-k';
    if (!cls) continue;
    out += esc(src.slice(pos, m.index));
    out += `<span class="${cls}">${esc(m[0])}</span>`;
    pos = m.index + m[0].length;
  }
  return out + esc(src.slice(pos));
}
