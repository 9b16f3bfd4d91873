// An independent second client of docs/PROTOCOL.md, in JavaScript: for each envelope it checks the
// canonical form, computes the EIP-712 digest from the documented rules and recovers the signer.
// Input (stdin): {"domain": {...}, "items": [{"encoded": "...", "fields": [{"name","type"}...]}]}.
// Output (stdout): one JSON line per item: {"type", "canonical", "digest", "signer"}.
import { secp256k1 } from '@noble/curves/secp256k1.js';
import { keccak_256 } from '@noble/hashes/sha3.js';

const enc = new TextEncoder();
const hex = (b) => Buffer.from(b).toString('hex');
const fromHex = (h) => Uint8Array.from(Buffer.from(h.slice(2), 'hex'));
const concat = (...parts) => Uint8Array.from(Buffer.concat(parts.map((p) => Buffer.from(p))));

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]));
  }
  return value;
}

function word(n) { // 32-byte two's complement big-endian
  let v = BigInt(n);
  if (v < 0n) v += 1n << 256n;
  return fromHex('0x' + v.toString(16).padStart(64, '0'));
}

function encodeAtomic(type, value) {
  if (type === 'string') return keccak_256(enc.encode(value));
  if (type === 'bytes') return keccak_256(fromHex(value));
  if (type === 'bytes32') return fromHex(value);
  if (type === 'address') return concat(new Uint8Array(12), fromHex(value));
  if (type === 'bool') return word(value ? 1 : 0);
  if (/^u?int\d+$/.test(type)) return word(value);
  throw new Error('unsupported type ' + type);
}

function hashStruct(name, fields, data) {
  const typeString = `${name}(${fields.map((f) => `${f.type} ${f.name}`).join(',')})`;
  const words = [keccak_256(enc.encode(typeString))];
  for (const f of fields) {
    const v = data[f.name];
    words.push(f.type.endsWith('[]')
      ? keccak_256(concat(...v.map((x) => encodeAtomic(f.type.slice(0, -2), x))))
      : encodeAtomic(f.type, v));
  }
  return keccak_256(concat(...words));
}

const DOMAIN_FIELDS = [
  { name: 'name', type: 'string' }, { name: 'version', type: 'string' },
  { name: 'chainId', type: 'uint256' }, { name: 'verifyingContract', type: 'address' },
  { name: 'salt', type: 'bytes32' },
];

const input = JSON.parse(await new Promise((resolve) => {
  let s = ''; process.stdin.on('data', (d) => { s += d; }); process.stdin.on('end', () => resolve(s));
}));
const separator = hashStruct('EIP712Domain', DOMAIN_FIELDS, input.domain);
for (const item of input.items) {
  const envelope = JSON.parse(item.encoded);
  const canonical = JSON.stringify(sortKeys(envelope)) === item.encoded;
  const digest = keccak_256(concat(Uint8Array.of(0x19, 0x01), separator,
    hashStruct(envelope.type, item.fields, envelope.body)));
  const sig = fromHex(envelope.sig);
  const recovered = concat(Uint8Array.of(sig[64] - 27), sig.slice(0, 64));
  const pub = secp256k1.Signature.fromBytes(recovered, 'recovered').recoverPublicKey(digest).toBytes(false);
  const signer = '0x' + hex(keccak_256(pub.slice(1)).slice(12));
  console.log(JSON.stringify({ type: envelope.type, canonical, digest: hex(digest), signer }));
}
