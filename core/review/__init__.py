"""Human review: campaigns over examples, annotators' queues, answers, agreement and results.

- tasks/: one module per review task (verification, rewrite, personalization, diversity, oot,
  custom) and the registry every other module reads.
- questions: the question kinds (rating, single_label, multi_label, text, flag) and their values.
- selection: which examples become a campaign's items (a task turns them into its items).
- campaigns: create, list, reveal and close campaigns (admins), the paper's evaluation preset.
- queue: an annotator's next / previous item, with what it shows.
- responses: drafts, submissions (never downgraded; edits are new versions) and skips.
- measures / agreement: Krippendorff's alpha, Cohen's kappa, agreement with the teacher, progress.
- results: the task's figures beside the paper's, CSV, and decisions on out-of-taxonomy labels.
"""
