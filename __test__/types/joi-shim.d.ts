// @hapi/hapi's declarations import these types from `joi`, which hapi does not
// depend on and this repo does not install (backends validating with joi have
// it). Opaque stand-ins keep skipLibCheck off, so our own .d.ts files are
// still checked.
declare module 'joi' {
  export type Root = unknown
  export type ObjectSchema<T = any> = { readonly __joiObjectSchema?: T }
  export type ValidationOptions = Record<string, unknown>
  export type SchemaMap = Record<string, unknown>
  export type Schema = unknown
}
