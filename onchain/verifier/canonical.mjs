// Canonical JSON of the RiskSnapshot standard, written from the spec (spec/risk-snapshot/).
//
// JSON.parse cannot be used: it forgets whether a number was written as an integer (kept
// as is) or a float (rounded to 12 significant digits), and it loses integers above 2^53.
// So this module parses JSON into a small tree that keeps every number's lexeme:
//   { num: "1.25" } | string | true | false | null | [values] | { pairs: [[key, value]] }

/** Parse strict JSON (duplicate keys refused) into the lexeme-keeping tree. */
export function parse(text) {
  let i = 0;
  const fail = (what) => {
    throw new Error(`${what} at offset ${i}`);
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") return object();
    if (c === "[") return array();
    if (c === '"') return string();
    if (text.startsWith("true", i)) return (i += 4), true;
    if (text.startsWith("false", i)) return (i += 5), false;
    if (text.startsWith("null", i)) return (i += 4), null;
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
    if (!m) fail("unexpected character");
    i += m[0].length;
    return { num: m[0] };
  };
  const string = () => {
    const m = /^"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/.exec(text.slice(i));
    if (!m) fail("bad string");
    i += m[0].length;
    return JSON.parse(m[0]);
  };
  const array = () => {
    i++;
    const items = [];
    ws();
    if (text[i] === "]") return i++, items;
    for (;;) {
      items.push(value());
      ws();
      if (text[i] === ",") i++;
      else if (text[i] === "]") return i++, items;
      else fail("expected , or ]");
    }
  };
  const object = () => {
    i++;
    const pairs = [];
    const seen = new Set();
    ws();
    if (text[i] === "}") return i++, { pairs };
    for (;;) {
      ws();
      const key = string();
      if (seen.has(key)) fail(`duplicate key ${JSON.stringify(key)}`);
      seen.add(key);
      ws();
      if (text[i++] !== ":") fail("expected :");
      pairs.push([key, value()]);
      ws();
      if (text[i] === ",") i++;
      else if (text[i] === "}") return i++, { pairs };
      else fail("expected , or }");
    }
  };
  const result = value();
  ws();
  if (i !== text.length) fail("trailing characters");
  return result;
}

/** Canonical JSON text of a parsed tree. */
export function canonical(node) {
  if (node === null) return "null";
  if (node === true) return "true";
  if (node === false) return "false";
  if (typeof node === "string") return quote(node);
  if (Array.isArray(node)) return "[" + node.map(canonical).join(",") + "]";
  if ("num" in node) return number(node.num);
  const pairs = [...node.pairs].sort((a, b) => byCodePoint(a[0], b[0]));
  return "{" + pairs.map(([k, v]) => quote(k) + ":" + canonical(v)).join(",") + "}";
}

/** The object member `key` of a tree node (undefined when absent). */
export function member(node, key) {
  const pair = node.pairs.find(([k]) => k === key);
  return pair ? pair[1] : undefined;
}

/** A copy of an object node without `key`. */
export function without(node, key) {
  return { pairs: node.pairs.filter(([k]) => k !== key) };
}

/** A copy of an object node with `key` set to `value`. */
export function withMember(node, key, value) {
  return { pairs: [...without(node, key).pairs, [key, value]] };
}

// Python's json.dumps(s, ensure_ascii=True): every UTF-16 unit outside space..tilde escaped.
const SHORT = { '"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f" };

function quote(s) {
  let out = '"';
  for (let k = 0; k < s.length; k++) {
    const ch = s[k];
    const code = s.charCodeAt(k);
    if (SHORT[ch]) out += SHORT[ch];
    else if (code < 0x20 || code > 0x7e) out += "\\u" + code.toString(16).padStart(4, "0");
    else out += ch;
  }
  return out + '"';
}

function byCodePoint(a, b) {
  const x = Array.from(a, (c) => c.codePointAt(0));
  const y = Array.from(b, (c) => c.codePointAt(0));
  for (let k = 0; k < Math.min(x.length, y.length); k++) if (x[k] !== y[k]) return x[k] - y[k];
  return x.length - y.length;
}

function number(lexeme) {
  if (!/[.eE]/.test(lexeme)) return BigInt(lexeme).toString(); // an integer: as is, -0 -> 0
  const x = Number(lexeme); // correctly rounded, as Python's float()
  if (!Number.isFinite(x)) throw new Error(`number ${lexeme} is not finite`);
  if (x === 0) return "0";
  return formatG12(x);
}

/** Python's format(x, ".12g"): exact decimal of the double, rounded half to even. */
export function formatG12(x) {
  const negative = x < 0;
  let [digits, exp10] = exactDecimal(Math.abs(x)); // value = digits * 10^exp10
  if (digits.length > 12) {
    const head = BigInt(digits.slice(0, 12));
    const rest = digits.slice(12);
    const half = "5" + "0".repeat(rest.length - 1);
    let kept = head;
    if (rest > half || (rest === half && head % 2n === 1n)) kept += 1n;
    exp10 += rest.length;
    digits = kept.toString();
    if (digits.length > 12) {
      digits = digits.slice(0, 12);
      exp10 += 1;
    }
  }
  const exponent = exp10 + digits.length - 1; // of the leading digit
  const sign = negative ? "-" : "";
  if (exponent < -4 || exponent >= 12) {
    const fraction = digits.slice(1).replace(/0+$/, "");
    const mantissa = fraction ? `${digits[0]}.${fraction}` : digits[0];
    const e = Math.abs(exponent).toString().padStart(2, "0");
    return `${sign}${mantissa}e${exponent < 0 ? "-" : "+"}${e}`;
  }
  let text;
  if (exp10 >= 0) text = digits + "0".repeat(exp10);
  else {
    const padded = digits.padStart(-exp10 + 1, "0");
    text = padded.slice(0, padded.length + exp10) + "." + padded.slice(padded.length + exp10);
  }
  if (text.includes(".")) text = text.replace(/\.?0+$/, "");
  return sign + text;
}

function exactDecimal(x) {
  // A double is m * 2^k exactly; m * 5^-k * 10^k spells it in decimal digits.
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const rawExp = Number((bits >> 52n) & 0x7ffn);
  let m = bits & ((1n << 52n) - 1n);
  let k;
  if (rawExp === 0) k = -1074;
  else {
    m |= 1n << 52n;
    k = rawExp - 1075;
  }
  if (k >= 0) return stripZeros((m << BigInt(k)).toString(), 0);
  return stripZeros((m * 5n ** BigInt(-k)).toString(), k);
}

function stripZeros(digits, exp10) {
  const trimmed = digits.replace(/0+$/, "");
  return [trimmed || "0", exp10 + (digits.length - trimmed.length)];
}

/** floor(value * 10^18) of a decimal lexeme, exactly (the WAD of a canonical number). */
export function wad(lexeme) {
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(lexeme);
  if (!m || m[1]) throw new Error(`${lexeme} is not a non-negative number`);
  const digits = BigInt(m[2] + (m[3] || ""));
  const scale = 18 - (m[3] || "").length + Number(m[4] || 0);
  return scale >= 0 ? digits * 10n ** BigInt(scale) : digits / 10n ** BigInt(-scale);
}
