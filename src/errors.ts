/**
 * errors.ts: control-plane errors. The data path never throws per packet; it returns a
 * DropReason (src/datapath/drops.ts). Everything else that can fail throws a GatewayError
 * with a stable `code`, a human message and, where there is one, the `cause`.
 */

/** ErrorCode lists every stable error code; the CLI maps them to messages and exit codes. */
export type ErrorCode =
  | 'ERR_CONFIG'          // config file unreadable, unparsable or invalid
  | 'ERR_PREFIX'          // real/fake prefix maths (length mismatch, overlap, outside prefix)
  | 'ERR_ESP_KEY'         // key material of the wrong length or form
  | 'ERR_ESP_SEQ_EXHAUSTED' // outbound sequence space used up: the SA refuses to send
  | 'ERR_SEQ_STORE'       // sequence reservation could not be persisted
  | 'ERR_RULES_APPLY'     // iptables-restore / ipset refused our rules
  | 'ERR_RULES_REMOVE'
  | 'ERR_TUN'             // TUN device could not be opened or configured
  | 'ERR_RAWSOCK'
  | 'ERR_NFQUEUE'
  | 'ERR_NETLINK'         // ip(8) route/addr/link operations
  | 'ERR_ALREADY_RUNNING'
  | 'ERR_CONTROL'         // control socket
  | 'ERR_MISSING_TOOL'
  | 'ERR_IKE'             // the IKE sockets (UDP 500/4500) could not be opened
  | 'ERR_PRIVILEGE';     // the process lacks a capability it needs (CAP_NET_ADMIN, CAP_NET_RAW)

/** GatewayError is the one base class for control-plane errors. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
  }

  /** isGatewayError works across copies of the module (compares the name and code shape). */
  static isGatewayError(e: unknown): e is GatewayError {
    return e instanceof Error && e.name === 'GatewayError' && typeof (e as { code?: unknown }).code === 'string';
  }
}
