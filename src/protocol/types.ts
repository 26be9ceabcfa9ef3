/** Small shared types of the protocol, used by client and broker alike. */
export type Durability = 'none' | 'interval' | 'always';
export const durabilities: readonly Durability[] = ['none', 'interval', 'always'];
