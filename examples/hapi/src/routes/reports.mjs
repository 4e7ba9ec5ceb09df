// `await using` frees the lock when the handler returns or throws. This is
// Node 24+ syntax, so routes/index.mjs imports this file only there.
export const rebuildReport = {
  method: 'POST',
  path: '/reports/{reportId}/rebuild',
  handler: async (request, h) => {
    const { reportId } = request.params
    await using lock = await request.locker.lock(`report-${reportId}`)
    if (!lock) {
      return h.response({ status: 'locked', retry: true }).code(409)
    }
    // Rebuild the report here.
    return { status: 'rebuilt', reportId }
  },
}
