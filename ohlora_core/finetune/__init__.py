"""StyleGAN fine-tuning (the original's StyleGAN-FineTune v1..v4).

* `variants`: each version as a small declarative record (labels, widths, trainable groups, batch...).
* `restructure`: conditional G/D built from a pretrained (or earlier fine-tuned) checkpoint the way
  the original did it (dropped keys re-initialised, seeded), and loaders for the original's files.
* `loss`: the GAN loss in phases (D: logistic + R1; G: non-saturating), stylegan2-ada style.
* `loop`: one training loop for every GAN variant: freezing by name groups, optimisers, the
  "update G again while g_loss >= 2 x d_loss" rule, logging, snapshots and resume.
"""
