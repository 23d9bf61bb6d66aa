"""Loading the portal's JSON file: reading, merging with the stored records, writing.

`worker.importing.load` is the public entry point; the modules here are its parts:

* `problems`: errors and warnings as `path: message`, in file order;
* `fields`, `shapes`, `parse`: the file's shape, strict JSON types, per-field checks;
* `existing`: the stored rows the file touches or refers to, loaded in chunks;
* `merge`, `subscriptions`: the merged record (stored values + carried fields);
* `checks`, `codes`: rules across records (references, dates, terms, the code limit);
* `write`: one INSERT and a few UPDATEs per section, and the re-evaluation resets;
* `run`: the whole import in one transaction;
* `ownership`, `carry`: who owns each field, and how each merges;
* `audit`, `report`: the import's own row and audit trail, and what it tells;
* `contacts`: a contact whose address changed has its suppression lifted.

Imports: worker.mail.suppressions, worker.events, worker.db, worker.rules, worker.config,
worker.errors. Never worker.passes.
"""
