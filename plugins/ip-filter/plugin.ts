// ip-filter: refuses requests by the client's IP address (`ctx.request.clientIp`, which
// the proxy takes from X-Forwarded-For only when the peer is a trusted proxy). A client
// in a `deny` network is refused; with an `allow` list, so is every client outside it;
// deny wins over allow. Networks are CIDRs (`10.0.0.0/8`, `2001:db8::/32`) or single
// addresses, IPv4 and IPv6; an IPv4-mapped IPv6 client (`::ffff:10.1.2.3`, as a
// dual-stack listener reports IPv4 peers) is judged as its IPv4 address. A request whose
// client address is unknown is refused unless `allowUnknown` is true: a filter that
// cannot see the address cannot tell it is not a denied one. Refusals are 403 with a
// JSON body.
import type { Context, Plugin } from "weir";
import { memoizeByConfig } from "./config";

interface Config {
  /** Networks allowed in; when set, every other client is refused. */
  allow?: string[];
  /** Networks refused, even when `allow` lists them too. */
  deny?: string[];
  /** Whether a request whose client address is unknown passes (default false). */
  allowUnknown?: boolean;
}

/** An address or network: 4 (IPv4) or 16 (IPv6) bytes, and a prefix length in bits. */
interface Network {
  bytes: number[];
  prefix: number;
}

interface Parsed {
  allow: Network[] | null;
  deny: Network[];
  allowUnknown: boolean;
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** The 4 bytes of a dotted IPv4 address (no leading zeros), or null. */
function parseIPv4(text: string): number[] | null {
  const match = IPV4.exec(text);
  if (!match) return null;
  const bytes: number[] = [];
  for (let i = 1; i <= 4; i++) {
    const part = match[i];
    if (part.length > 1 && part[0] === "0") return null;
    const byte = Number(part);
    if (byte > 255) return null;
    bytes.push(byte);
  }
  return bytes;
}

/** The 16 bytes of an IPv6 address (with `::` and a trailing dotted IPv4), or null. */
function parseIPv6(text: string): number[] | null {
  const halves = text.split("::");
  if (halves.length > 2) return null;
  const groups = (half: string): number[] | null => {
    if (half === "") return [];
    const out: number[] = [];
    const parts = half.split(":");
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (i === parts.length - 1 && part.includes(".")) {
        const v4 = parseIPv4(part);
        if (v4 === null) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (HEX_GROUP.test(part)) {
        out.push(parseInt(part, 16));
      } else {
        return null;
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === null || tail === null) return null;
  // A dotted IPv4 part may only end the address.
  if (halves.length === 2 && halves[0].includes(".")) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const bytes: number[] = [];
  for (const group of all) bytes.push(group >> 8, group & 0xff);
  return bytes;
}

/** Whether 16 bytes are an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`). */
function isMapped(bytes: number[]): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

/** An address as bytes, IPv4-mapped IPv6 addresses as IPv4; null when it is none. */
function parseAddress(text: string): number[] | null {
  if (!text.includes(":")) return parseIPv4(text);
  const bytes = parseIPv6(text);
  return bytes !== null && isMapped(bytes) ? bytes.slice(12) : bytes;
}

/** A CIDR or a single address; the reason as a string when it is neither. */
function parseNetwork(text: string): Network | string {
  if (typeof text !== "string") return "is not a string";
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  let bytes = address.includes(":") ? parseIPv6(address) : parseIPv4(address);
  if (bytes === null) return "is not an IPv4 or IPv6 address or CIDR";
  const bits = bytes.length * 8;
  let prefix = bits;
  if (slash >= 0) {
    const length = text.slice(slash + 1);
    if (!/^(0|[1-9]\d{0,2})$/.test(length) || Number(length) > bits) {
      return `has a prefix length that is not 0 to ${bits}`;
    }
    prefix = Number(length);
  }
  if (bits === 128 && prefix >= 96 && isMapped(bytes)) {
    bytes = bytes.slice(12);
    prefix -= 96;
  }
  return { bytes, prefix };
}

function contains(network: Network, address: number[]): boolean {
  if (network.bytes.length !== address.length) return false;
  let bits = network.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((network.bytes[i] & mask) !== (address[i] & mask)) return false;
  }
  return true;
}

function parseList(list: unknown, field: string): Network[] {
  if (!Array.isArray(list)) throw new TypeError(`ip-filter: config.${field} must be a list of CIDRs`);
  return list.map((entry, i) => {
    const network = parseNetwork(entry);
    if (typeof network === "string") {
      throw new TypeError(`ip-filter: config.${field}[${i}] ${JSON.stringify(entry)} ${network}`);
    }
    return network;
  });
}

function parse(config: Config): Parsed {
  return {
    allow: config.allow === undefined || config.allow === null ? null : parseList(config.allow, "allow"),
    deny: config.deny === undefined || config.deny === null ? [] : parseList(config.deny, "deny"),
    allowUnknown: config.allowUnknown === true,
  };
}

const lists = memoizeByConfig(parse);

function forbidden(ctx: Context<Config>, message: string) {
  return ctx.reject(403, { error: "forbidden", message });
}

export default {
  onLoad(ctx) {
    // The plugin's own config: a bad one fails the load, with the reason.
    lists(ctx);
  },
  beforeRequest(ctx) {
    const { allow, deny, allowUnknown } = lists(ctx);
    const ip = ctx.request.clientIp;
    const address = ip === null ? null : parseAddress(ip);
    if (address === null) {
      if (allowUnknown) return;
      return forbidden(ctx, "the client address is unknown");
    }
    if (deny.some((network) => contains(network, address))) {
      return forbidden(ctx, `the client address ${ip} is not allowed`);
    }
    if (allow !== null && !allow.some((network) => contains(network, address))) {
      return forbidden(ctx, `the client address ${ip} is not allowed`);
    }
  },
} satisfies Plugin<Config>;
