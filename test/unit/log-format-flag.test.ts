import { describe, expect, it } from 'vitest';
import { takeLogFormat } from '../../core/cli/args.js';
import { UsageError } from '../../core/cli/errors.js';

describe('takeLogFormat: --log-format, parsed once for every command', () => {
  it('takes the flag in either spelling out of the arguments, wherever it stands', () => {
    expect(takeLogFormat(['--listen', '127.0.0.1:0', '--log-format', 'json', '--json'], {})).toEqual({ logFormat: 'json', rest: ['--listen', '127.0.0.1:0', '--json'] });
    expect(takeLogFormat(['--log-format=text', 'NAME'], {})).toEqual({ logFormat: 'text', rest: ['NAME'] });
  });

  it('leaves everything after `--` alone: a message may say --log-format', () => {
    expect(takeLogFormat(['--to', 'a@b', '--', '--log-format', 'xml'], {})).toEqual({ logFormat: 'text', rest: ['--to', 'a@b', '--', '--log-format', 'xml'] });
  });

  it('falls back to CONTACT_POINT_LOG_FORMAT, then text; the flag wins over the variable', () => {
    expect(takeLogFormat([], { CONTACT_POINT_LOG_FORMAT: 'json' }).logFormat).toBe('json');
    expect(takeLogFormat([], { CONTACT_POINT_LOG_FORMAT: '' }).logFormat).toBe('text');
    expect(takeLogFormat([], {}).logFormat).toBe('text');
    expect(takeLogFormat(['--log-format', 'text'], { CONTACT_POINT_LOG_FORMAT: 'json' }).logFormat).toBe('text');
  });

  it('refuses a bad or missing value, from the flag or the variable, as a usage error', () => {
    expect(() => takeLogFormat(['--log-format', 'JSON'], {})).toThrow(new UsageError('--log-format "JSON": expected text or json'));
    expect(() => takeLogFormat(['--log-format'], {})).toThrow(new UsageError('--log-format needs a value: text or json'));
    expect(() => takeLogFormat(['--log-format', '--json'], {})).toThrow(UsageError);
    expect(() => takeLogFormat([], { CONTACT_POINT_LOG_FORMAT: 'yaml' })).toThrow(new UsageError('CONTACT_POINT_LOG_FORMAT "yaml": expected text or json'));
  });
});
