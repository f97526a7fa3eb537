"""File readers of the data modules, free of Lightning: text files, tables and Hugging Face datasets
(:mod:`.text`), IDX arrays, image folders and the digits (:mod:`.image`), ``.flo`` files and frame pairs
(:mod:`.flow`), and video with its audio track (:mod:`.video`)."""
