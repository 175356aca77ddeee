// Reference verifier of the RiskSnapshot test vectors, in JavaScript, from the spec alone.
//
// It recomputes, independently of the Python code that wrote them: canonical bytes and
// their SHA-256; a snapshot's signed payload, reference id and keccak256 payload hash; the
// Ed25519 signature (@noble/curves); the EIP-712 type hash, domain separator, struct hash
// and digest, and the signer recovered from the secp256k1 signature; and, for v2, the six
// RiskOracle records (newValue and the additionalData envelope, ABI-encoded by hand).
//
// Usage: node verifier/verify_vectors.mjs ../spec/risk-snapshot/vectors.json
// Prints one line per vector and "N passed, M failed"; exits 1 on any failure.
import { readFileSync } from "node:fs";
import { ed25519 } from "@noble/curves/ed25519.js";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { sha256 } from "@noble/hashes/sha2.js";
import { keccak_256 } from "@noble/hashes/sha3.js";
import { bytesToHex, hexToBytes, utf8ToBytes } from "@noble/hashes/utils.js";
import { canonical, member, parse, wad, without, withMember } from "./canonical.mjs";

const hex = (bytes) => "0x" + bytesToHex(bytes);
const unhex = (text) => hexToBytes(text.replace(/^0x/, ""));
const keccak = (bytes) => keccak_256(bytes);
const concat = (...parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), (at += p.length);
  return out;
};
const word = (n) => hexToBytes(BigInt(n).toString(16).padStart(64, "0"));
const padRight = (bytes) => concat(bytes, new Uint8Array((32 - (bytes.length % 32)) % 32));

const V1_DOMAIN = { name: "dynamargin", version: "1", chainId: "1", verifyingContract: "0x" + "0".repeat(40) };
const DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";
const V2_TYPE =
  "RiskParameters(string market,uint256 updateId,uint256 multiplier,uint256 imf,uint256 mmf," +
  "uint256 sigma,uint256 var99,uint256 es99,uint256 publishedAt,uint256 validUntil," +
  "string status,string referenceId,bytes32 payloadHash)";
const V1_TYPE =
  "RiskUpdate(string market,string updateType,uint256 newValue,uint256 previousValue," +
  "uint256 updateId,uint256 timestamp,uint256 validUntil,string status,string referenceId," +
  "bytes32 payloadHash)";
const UPDATE_TYPES = [
  ["marginMultiplier", ["margin", "multiplier"]],
  ["initialMarginFraction", ["margin", "imf"]],
  ["maintenanceMarginFraction", ["margin", "mmf"]],
  ["sigma", ["sigma"]],
  ["var99", ["var_99"]],
  ["es99", ["es_99"]],
];

function encodeStruct(typeString, values) {
  // EIP-712 encodeData: each member as one 32-byte word.
  const fields = typeString.slice(typeString.indexOf("(") + 1, -1).split(",");
  const words = fields.map((f, k) => {
    const [type] = f.split(" ");
    const v = values[k];
    if (type === "string") return keccak(utf8ToBytes(v));
    if (type === "bytes32") return unhex(v);
    if (type === "address") return concat(new Uint8Array(12), unhex(v));
    return word(v);
  });
  return keccak(concat(keccak(utf8ToBytes(typeString)), ...words));
}

function seconds(node) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{6})?Z$/.exec(node);
  if (!m) throw new Error(`bad time ${node}`);
  return BigInt(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000);
}

const at = (doc, path) => path.reduce((node, key) => member(node, key), doc);

function checkSnapshot(v, check) {
  const doc = parse(v.document);
  check("document is canonical", canonical(doc) === v.document);
  const payloadTree = without(doc, "signature");
  const payload = utf8ToBytes(canonical(payloadTree));
  check("signing payload", canonical(payloadTree) === v.signing_payload);
  const content = withMember(payloadTree, "provenance", without(member(doc, "provenance"), "reference_id"));
  const contentHash = bytesToHex(sha256(utf8ToBytes(canonical(content))));
  check("payload sha256", contentHash === v.payload_sha256);
  const updateId = BigInt(member(doc, "update_id").num);
  const ref = `${member(doc, "asset")}:${updateId}:${contentHash.slice(0, 16)}`;
  check("reference id", ref === v.reference_id && ref === at(doc, ["provenance", "reference_id"]));
  const payloadKeccak = hex(keccak(payload));
  check("payload keccak256", payloadKeccak === v.payload_keccak256);

  const sig = member(doc, "signature");
  const ed = member(sig, "ed25519");
  check(
    "ed25519 signature",
    ed25519.verify(unhex(member(ed, "signature")), payload, unhex(member(ed, "public_key"))),
  );

  const v2 = member(doc, "schema") === "dynamargin.risk/2";
  const eip = member(sig, "eip712");
  const domainNode = v2 ? member(eip, "domain") : null;
  const domain = v2
    ? {
        name: member(domainNode, "name"),
        version: member(domainNode, "version"),
        chainId: member(domainNode, "chainId").num,
        verifyingContract: member(domainNode, "verifyingContract"),
      }
    : V1_DOMAIN;
  const w = (path) => wad(at(doc, path).num);
  const message = v2
    ? [
        member(doc, "asset"), updateId, w(["margin", "multiplier"]), w(["margin", "imf"]),
        w(["margin", "mmf"]), w(["sigma"]), w(["var_99"]), w(["es_99"]),
        seconds(member(doc, "published_at")), seconds(member(doc, "valid_until")),
        member(doc, "status"), ref, payloadKeccak,
      ]
    : [
        member(doc, "asset"), "marginMultiplier", w(["margin", "multiplier"]),
        w(["margin", "previous_multiplier"]), updateId, seconds(member(doc, "published_at")),
        seconds(member(doc, "valid_until")), member(doc, "status"), ref, payloadKeccak,
      ];
  const typeString = v2 ? V2_TYPE : V1_TYPE;
  const names = typeString.slice(typeString.indexOf("(") + 1, -1).split(",").map((f) => f.split(" ")[1]);
  check(
    "EIP-712 message from the document",
    names.every((n, k) => String(message[k]) === v.eip712.message[n]),
  );
  check("EIP-712 type hash", hex(keccak(utf8ToBytes(typeString))) === v.eip712.typeHash);
  const separator = encodeStruct(DOMAIN_TYPE, [
    domain.name, domain.version, domain.chainId, domain.verifyingContract,
  ]);
  check("EIP-712 domain separator", hex(separator) === v.eip712.domainSeparator);
  const structHash = encodeStruct(typeString, message);
  check("EIP-712 struct hash", hex(structHash) === v.eip712.structHash);
  const digest = keccak(concat(new Uint8Array([0x19, 0x01]), separator, structHash));
  check("EIP-712 digest", hex(digest) === v.eip712.digest);
  const rsv = unhex(member(eip, "signature"));
  const recovered = secp256k1.recoverPublicKey(
    concat(new Uint8Array([rsv[64] - 27]), rsv.slice(0, 64)),
    digest,
    { prehash: false, format: "recovered" },
  );
  const point = secp256k1.Point.fromBytes(recovered).toBytes(false);
  const address = hex(keccak(point.slice(1)).slice(12));
  check(
    "EIP-712 signer recovered",
    address === member(eip, "signer").toLowerCase() && address === v.eip712.signer.toLowerCase(),
  );

  if (!v2) return;
  const validUntil = seconds(member(doc, "valid_until"));
  UPDATE_TYPES.forEach(([type, path], k) => {
    const record = v.risk_oracle[k];
    check(`oracle ${type}: type, market, reference id`,
      record.updateType === type &&
      record.market === hex(utf8ToBytes(member(doc, "asset"))) &&
      record.referenceId === ref);
    check(`oracle ${type}: newValue`, record.newValue === hex(word(wad(at(doc, path).num))));
    const extra = k === 0 ? envelope(domain, updateId, doc, validUntil, payloadKeccak, rsv) : word(validUntil);
    check(`oracle ${type}: additionalData`, record.additionalData === hex(extra));
  });
}

function envelope(domain, updateId, doc, validUntil, payloadKeccak, signature) {
  // abi.encode((uint256,uint256,address,uint256,uint256,uint256,string,bytes32,bytes)).
  const status = utf8ToBytes(member(doc, "status"));
  const statusTail = concat(word(status.length), padRight(status));
  const head = [
    word(2n), word(domain.chainId), concat(new Uint8Array(12), unhex(domain.verifyingContract)),
    word(updateId), word(seconds(member(doc, "published_at"))), word(validUntil),
    word(9 * 32), unhex(payloadKeccak), word(9 * 32 + statusTail.length),
  ];
  const sigTail = concat(word(signature.length), padRight(signature));
  return concat(word(32), ...head, statusTail, sigTail);
}

const path = process.argv[2];
if (!path) {
  console.error("usage: node verify_vectors.mjs VECTORS.json");
  process.exit(2);
}
const vectors = JSON.parse(readFileSync(path, "utf8"));
let passed = 0;
let failed = 0;
const check = (name) => (what, ok) => {
  if (ok) passed++;
  else {
    failed++;
    console.log(`FAIL ${name}: ${what}`);
  }
};
for (const c of vectors.canonical) {
  const out = canonical(parse(c.input));
  check(c.name)("canonical bytes", out === c.canonical);
  check(c.name)("sha256", bytesToHex(sha256(utf8ToBytes(out))) === c.sha256);
}
check("keys")("ed25519 public key from the seed",
  bytesToHex(ed25519.getPublicKey(unhex(vectors.keys.ed25519_seed))) === vectors.keys.ed25519_public_key);
for (const v of vectors.snapshots) {
  const before = failed;
  try {
    checkSnapshot(v, check(v.name));
  } catch (err) {
    check(v.name)(`threw ${err.message}`, false);
  }
  console.log(`${failed === before ? "ok  " : "FAIL"} snapshot vector: ${v.name}`);
}
console.log(`${vectors.canonical.length} canonical and ${vectors.snapshots.length} snapshot vectors`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
