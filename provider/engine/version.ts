/**
 * The provider's version, kept in every resource's outputs, so a state written by an older
 * release is known as such: what that release did not write (counter rules, boot entries in the
 * newer script text) is not drift to its refresh, and its next `up` rewrites them in place.
 */
export const NATGATE_VERSION = "0.2.0";

/** Whether these outputs were written by a release before the version was recorded (0.1.0). */
export function isLegacyState(props: Record<string, unknown> | undefined): boolean {
  return !!props && props.natgateVersion === undefined;
}

/**
 * Drift without lines naming one of `newObjects`, what an older release never wrote. (Boot entries
 * and the runner in an older release's text are observeBoot's to judge: its `upgrading` flag.)
 */
export function withoutUpgradeDrift(drift: string[], newObjects: string[]): string[] {
  return drift.filter((d) => !newObjects.some((o) => d.includes(o)));
}
