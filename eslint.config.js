// Type-aware lint: floating promises and type-only imports are checked, and the import
// directions of the architecture (DESIGN.md "Layout") are enforced, not only written down.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Modules of core/ that the renderer may import as values: pure TypeScript (checked below), so
// the GUI and the core share one definition instead of keeping copies.
const RENDERER_SHARED = ['protocol/name', 'protocol/status', 'admin/client-protocol', 'admin/flood-notice', 'admin/relay-contract', 'admin/audit-text', 'admin/rules-text', 'admin/history-export', 'admin/launch', 'admin/tunnel-slots'];
const CORE_IMPORTS = [
  { group: ['electron', 'react', 'react-dom', 'zustand'], message: 'core/ is plain Node: no Electron, React or DOM.' },
  { group: ['**/electron/**', '**/renderer/**'], message: 'core/ imports nothing of ours outside core/.' },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'renderer/dist/**', 'release/**', 'bin/**', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/only-throw-error': 'error',
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
    },
  },
  {
    files: ['core/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: CORE_IMPORTS }],
    },
  },
  {
    // Modules of core that the renderer compiles (the shared ones, the contract, and what they
    // import): no Node, no dependencies, nothing with I/O.
    files: [...RENDERER_SHARED, 'admin/contract', 'admin/host-settings', 'protocol/schema', 'protocol/limits', 'protocol/dial-failure'].map((m) => `core/${m}.ts`),
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            ...CORE_IMPORTS,
            { regex: '^node:', message: 'the renderer imports this module: no Node modules.' },
            { group: ['fs', 'fs/*', 'net', 'child_process', 'ws', 'path', 'os', 'crypto', 'https-proxy-agent', 'ipaddr.js'], message: 'the renderer imports this module: no Node modules or dependencies.' },
            { group: ['**/runtime/**'], message: 'the renderer imports this module: nothing of core/runtime.' },
          ],
        },
      ],
    },
  },
  {
    // The GUI runs in a browser or a sandboxed window: no Node, no Electron, and of core only
    // the admin contract's types (DESIGN.md "renderer -> core/admin types only"), plus the pure
    // modules listed in RENDERER_SHARED, so a rule the GUI checks is the same code the core runs.
    files: ['renderer/**/*.ts', 'renderer/**/*.tsx'],
    rules: {
      'no-restricted-imports': 'off',
      '@typescript-eslint/no-restricted-imports': [
        'error',
        {
          patterns: [
            { regex: '^node:', message: 'renderer/ runs in a browser: no Node modules.' },
            { group: ['fs', 'fs/*', 'net', 'child_process', 'ws', 'electron', 'path', 'os', 'crypto'], message: 'renderer/ runs in a browser: no Node or Electron modules.' },
            { group: ['**/electron/**'], message: 'renderer/ talks to the desktop app only through window.contactPoint.' },
            { regex: `(^|/)core/(?!(admin/contract|admin/host-settings|${RENDERER_SHARED.join('|')})(\\.js)?$)`, message: `renderer/ may use only the admin contract (core/admin/contract, core/admin/host-settings) and the pure modules core/${RENDERER_SHARED.join(', core/')}.` },
            { group: ['**/core/admin/contract*', '**/core/admin/host-settings*'], allowTypeImports: true, message: 'renderer/ imports the admin contract as types only (`import type`).' },
          ],
        },
      ],
    },
  },
  {
    // Electron main and preload run the core; the core never imports them.
    files: ['electron/**/*.ts', 'electron/**/*.cts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [{ group: ['**/renderer/**'], message: 'electron/ loads the built GUI, it does not import it.' }] }],
    },
  },
  {
    // Plain JS helpers (fixtures, build scripts) are not in a tsconfig: lint them without types.
    files: ['**/*.mjs', '**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      parserOptions: { projectService: false, project: null },
      globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly' },
    },
  },
);
