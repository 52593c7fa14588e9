# METADATA
# title: Decision-log masking
# description: |
#   Queried by OPA's decision-log plugin (decision_logs.mask_decision) before
#   each event is buffered/uploaded. Here `input` is the whole decision-log
#   event, so the original query input is `input.input`.
#   Clinical content is never needed for auditing an access decision, so it is
#   erased from every logged event.
package system.log

# METADATA
# title: Mask
# description: |
#   JSON pointers (into the decision-log event) that OPA erases before logging.
#   Plain strings mean "remove"; OPA ignores pointers to undefined fields, so
#   the rules are unconditional. Erased pointers are listed in the event's
#   `erased` field.
# entrypoint: true
mask contains "/input/resource/content"

mask contains "/input/resource/text"

mask contains "/input/context/note"

# The export policy (akson/export) is asked about whole outbound payloads; a refused one may
# hold the very identifier it was refused for. The decision (allow, reasons, violation paths
# and codes) is what an audit needs, not the payload or the file name it was to be written to.
mask contains "/input/payload"

mask contains "/input/file_name"
