import type { FlowDirection } from '../admin/contract.js';
import { encodeAck, type MsgFrame } from '../protocol/codec.js';
import { messageCount } from '../protocol/seal.js';
import { describeStatus, type StatusCode } from '../protocol/status.js';
import type { FlowRecorder } from './flow-recorder.js';

/** Where a refusal or an ACK for a message goes back to. */
export type Reply = (frame: Buffer) => void;

/**
 * The contact point's one refusal path (collector, distributor, outbound): answer the message
 * with a refusal ACK, never a silent drop (every refusal has a reason the sender sees), and
 * count it in the admin's flow. `reason` goes to the sender (default: the status
 * text); `adminDetail`, when given, only to the flow view. `noted` false: counted in the flow's
 * totals only, with no event and no history entry (what a flood would write one by one).
 */
export function refuse(
  flow: FlowRecorder,
  msg: MsgFrame,
  code: StatusCode,
  dir: FlowDirection,
  reply: Reply,
  reason?: string,
  adminDetail?: string,
  noted = true,
): void {
  const text = reason ?? describeStatus(code);
  if (noted) flow.record(msg.id, dir, msg.from, msg.to, msg.payload.length, code, adminDetail ?? text, messageCount(msg.flags, msg.payload));
  else flow.countOnly(dir, msg.payload.length, code, messageCount(msg.flags, msg.payload));
  reply(encodeAck({ id: msg.id, to: msg.from, from: msg.to, status: code, reason: text }));
}
