/** What each capability a contact point lists in its hello means (PROTOCOL.md, HELLO). */
const MEANING: Record<string, string> = {
  messages: 'carries addressed messages',
  reachable: 'understands REACHABLE (resend after an outage)',
  mediation: 'takes port requests from operators (within its port policy)',
  'udp-aead': 'speaks the encrypted UDP channel',
  sealed: 'carries sealed message payloads',
  direct: 'takes external peers directly (direct mode)',
};

/**
 * An office's capabilities as it announced them, each with what it means, and a plain mark
 * when it takes no port requests: the relay then refuses operators NOT_OFFERED (39).
 */
export function Capabilities({ list, mediation }: { list: readonly string[]; mediation: boolean }) {
  return (
    <>
      {list.map((c) => (
        <span key={c} className="tag" title={MEANING[c] ?? 'not known to this dashboard'} data-testid={`capability-${c}`}>
          {c}
        </span>
      ))}
      {!mediation && (
        <span className="tag off" title="operators' port requests for this office are refused NOT_OFFERED (39)" data-testid="no-mediation">
          no port mediation
        </span>
      )}
    </>
  );
}
