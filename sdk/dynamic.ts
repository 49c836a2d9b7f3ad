import type * as pulumi from "@pulumi/pulumi";

type Provider = pulumi.dynamic.ResourceProvider;

/**
 * The provider object a natgate resource hands to `pulumi.dynamic.Resource`.
 *
 * Pulumi serializes this object (and everything it captures) into each resource's state and
 * revives it in the dynamic-provider process. So it captures nothing but `kind`: every method
 * loads the implementation there, by the package's own name, and ssh2, zod and the provider code
 * are `require`d from the user's node_modules instead of being copied into the state.
 */
export function providerFor(kind: string): Provider {
  // One object per kind: pulumi.dynamic.Resource caches the serialized text per provider object,
  // so every resource of a kind after the first skips serialization.
  let provider = providers.get(kind);
  if (!provider) providers.set(kind, (provider = makeProvider(kind)));
  return provider;
}

const providers = new Map<string, Provider>();

function makeProvider(kind: string): Provider {
  // Kept inside providerFor so the serializer copies it along with the methods that call it.
  const load = (): Provider => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const impl = require("natgate/provider").providers[kind] as Provider | undefined;
    if (!impl) {
      throw new Error(
        `natgate has no provider for resource kind "${kind}"; ` +
          `the state was written by a different natgate version: install the version that created it`,
      );
    }
    return impl;
  };
  return {
    configure: async (req) => {
      const impl = load();
      if (impl.configure) await impl.configure(req);
    },
    // The defaults below are what Pulumi's dynamic-provider server does for a missing method.
    check: async (olds, news) => {
      const impl = load();
      return impl.check ? impl.check(olds, news) : { inputs: news };
    },
    diff: async (id, olds, news) => {
      const impl = load();
      return impl.diff ? impl.diff(id, olds, news) : {};
    },
    create: async (inputs) => load().create(inputs),
    read: async (id, props) => {
      const impl = load();
      return impl.read ? impl.read(id, props) : { id, props };
    },
    update: async (id, olds, news) => {
      const impl = load();
      return impl.update ? impl.update(id, olds, news) : {};
    },
    delete: async (id, props) => {
      const impl = load();
      if (impl.delete) await impl.delete(id, props);
    },
  };
}
