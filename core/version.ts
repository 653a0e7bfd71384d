/** The product version shown in hellos, the admin snapshot and `--version`. */
export const VERSION = '0.1.0';
