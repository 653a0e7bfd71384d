import { portRequestFields as f } from './frames.js';
import { obj, optional, union, type Infer, type ObjectSchema, type Shape } from './schema.js';

/**
 * What each port operation takes (seed 002, docs/PROTOCOL.md 16.3): one variant per `op`, with
 * exactly its keys, required where the op needs them. A PORT_REQUEST frame is decoded by the
 * frame table's schema (every key typed); the receiver then parses it with one of these, so
 * each op's handler gets exactly its own fields.
 */

/** Every request: the requester's correlation id and who asked. */
const common = { req: f.req, operator: f.operator };

/** Relay -> contact point: what the mediation system does. */
export const cpPortRequestSchema = union('op', {
  open: obj({ ...common, proto: f.proto, address: optional(f.address), port: optional(f.port), importance: optional(f.importance) }),
  redirect: obj({ ...common, portId: f.portId }),
  connect: obj({ ...common, portId: f.portId, host: f.host, targetPort: f.targetPort, streamId: f.streamId }),
  listen: obj({ ...common, portId: f.portId }),
  close: obj({ ...common, portId: f.portId }),
  /** a TCP exposure's one port at the contact point (proto tcp or absent; udp is refused) */
  expose: obj({ ...common, proto: optional(f.proto), host: f.host, targetPort: f.targetPort }),
});

/** The same request from an operator, naming the contact point it is for. */
function viaRelay<S extends Shape>(variant: ObjectSchema<S>): ObjectSchema<S & { cp: typeof f.cp }> {
  return obj({ ...variant.shape, cp: f.cp });
}

/** Operator -> relay: the contact point's operations through the relay, and the relay's exposures. */
export const operatorPortRequestSchema = union('op', {
  open: viaRelay(cpPortRequestSchema.variants.open),
  redirect: viaRelay(cpPortRequestSchema.variants.redirect),
  connect: viaRelay(cpPortRequestSchema.variants.connect),
  listen: viaRelay(cpPortRequestSchema.variants.listen),
  close: viaRelay(cpPortRequestSchema.variants.close),
  /** a public port on the relay: `port` is the relay-side port, 0 or absent = any free one */
  expose: obj({
    ...common,
    cp: f.cp,
    proto: optional(f.proto),
    host: f.host,
    targetPort: f.targetPort,
    port: optional(f.port),
    maxStreams: optional(f.maxStreams),
  }),
  /** `cp` may be given; an exposure is found by its id alone */
  unexpose: obj({ ...common, cp: optional(f.cp), portId: f.portId }),
  /** placement (PROTOCOL.md 17.6): which relay nodes hold the tunnels of `cp`, and their URLs */
  locate: obj({ ...common, cp: f.cp }),
});

export type CpPortRequest = Infer<typeof cpPortRequestSchema>;
export type OperatorPortRequest = Infer<typeof operatorPortRequestSchema>;
export type CpPortOp<O extends CpPortRequest['op']> = Extract<CpPortRequest, { op: O }>;
export type OperatorPortOp<O extends OperatorPortRequest['op']> = Extract<OperatorPortRequest, { op: O }>;

/** A request as its sender writes it, without the keys `K` the sending side fills in (each variant keeps its own keys). */
export type Without<U, K extends PropertyKey> = U extends unknown ? Omit<U, K> : never;
