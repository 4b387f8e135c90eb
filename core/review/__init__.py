"""Human review: campaigns over examples, annotators' queues, answers, agreement and results.

- questions: the question kinds (rating, single_label, multi_label, text, flag) and the four
  review tasks built on them (diversity, personalization, oot, verification).
- selection: which examples (or OOT names) become a campaign's items.
- campaigns: create, list, reveal and close campaigns (admins), with items and assignments.
- queue: an annotator's next / previous item, with what it shows.
- responses: drafts, submissions and skips; the rule that completes an item.
- agreement: Krippendorff's alpha, Cohen's kappa, agreement with the teacher, progress, time.
- results: CSV export and the admin's decisions on out-of-taxonomy labels.
"""
