from dicomsniffd.cli import main

raise SystemExit(main())
